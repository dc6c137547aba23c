"""``skbottleneck duplicates``: near-identical images in a store, or copied across two stores."""

import json
import sys

from ..similarity import find_duplicates
from ._files import open_store
from ._output import EXIT_OK, echo

__all__ = ["cmd_duplicates"]


def cmd_duplicates(args):
    """Print the groups of near-duplicates (one store) or the leaked images (two stores)."""
    store = open_store(args.store)
    other = open_store(args.other) if args.other else None
    dups = find_duplicates(store, other, threshold=args.threshold, k=args.k, exact=args.exact)
    if args.format == "json":
        json.dump(dups.to_records(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
        return EXIT_OK
    paths = store.paths
    if other is None:
        echo(f"{len(dups.groups)} groups of near-duplicates among {dups.n_images} images "
             f"(cosine distance <= {dups.threshold:g})")
        for i, group in enumerate(dups.groups, 1):
            echo(f"group {i} ({len(group)} images):")
            for row in group:
                echo(f"  {paths[row]}")
        return EXIT_OK
    echo(f"{len(dups.groups)} of {dups.n_images} images of {args.store} have a near-copy in "
         f"{args.other} (cosine distance <= {dups.threshold:g})")
    for r in dups.to_records():
        echo(f"  {r['distance']:.4f}  {r['path']}  ~  {r['other_path']}")
    return EXIT_OK
