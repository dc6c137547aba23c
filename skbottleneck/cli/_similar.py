"""``skbottleneck similar``: the stored images nearest each query image (cosine distance)."""

import json
import sys
import warnings

from .._keras import import_tf
from ..report import contact_sheet
from ..similarity import find_similar
from ._files import check_writable_file, find_images, open_store, weights_arg
from ._output import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, echo
from ._train import _transformer_from_store

__all__ = ["cmd_similar"]

_IN_MEMORY = {"auto": "auto", "in_memory": True, "streaming": False}


def cmd_similar(args):
    """Print the ``-k`` nearest stored images of each query image; exit 1 if one is unreadable."""
    store = open_store(args.store)
    if args.text or not args.images:
        return _text_search(store, args)
    if args.html:
        check_writable_file(args.html, "contact sheet")
    paths = find_images(args.images)
    # Fails early, before the CNN is built, when the store's model cannot be rebuilt.
    weights = weights_arg(args.weights) if args.weights else None
    transformer = _transformer_from_store(store, weights)
    transformer.set_params(on_error="skip")
    import_tf(quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable query images are reported below
        result = find_similar(store, paths, k=args.k, chunk_size=args.chunk_size,
                              in_memory=_IN_MEMORY[args.method], transformer=transformer,
                              exact=args.exact)
    records = result.to_records()
    if args.format == "json":
        _print_json(result, records)
    else:
        _print_table(result, records)
    if args.html:
        contact_sheet(result, args.html)
        echo(f"contact sheet written to {args.html}", file=sys.stderr)
    if result.failed:
        first = result.failed[0]
        echo(f"skbottleneck: error: {len(result.failed)} of {len(paths)} query images could not "
             f"be read (e.g. {first[0]}: {first[1]})", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _text_search(store, args):
    """``--text``: the stored images each text describes best (an image-text store)."""
    if not args.text or args.images or args.html:
        echo("skbottleneck: error: give query images or --text, not both and not neither "
             "(--html draws image queries only)", file=sys.stderr)
        return EXIT_USAGE
    import_tf(quiet=True)
    try:
        result = find_similar(store, text=args.text, k=args.k, chunk_size=args.chunk_size,
                              in_memory=_IN_MEMORY[args.method])
    except ValueError as e:
        echo(f"skbottleneck: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    records = result.to_records()
    (_print_json if args.format == "json" else _print_table)(result, records)
    return EXIT_OK


def _print_json(result, records):
    """A list of ``{"query", "neighbors": [...], "error"}``, the unreadable queries included."""
    k = result.indices.shape[1]
    out = [{"query": str(query),
            "neighbors": [{"rank": r["rank"], "distance": round(r["distance"], 6), "row": r["row"],
                           "path": r["path"], "label": r["label"]}
                          for r in records[q * k:(q + 1) * k]],
            "error": None}
           for q, query in enumerate(result.queries)]
    out += [{"query": path, "neighbors": [], "error": reason} for path, reason in result.failed]
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _print_table(result, records):
    """One block per query: ``rank  distance  label  path``."""
    labelled = result.labels is not None
    k = result.indices.shape[1]
    for q, query in enumerate(result.queries):
        rows = records[q * k:(q + 1) * k]
        if q:
            echo("")
        echo(f"query: {query}")
        width = max([5] + [len(str(r["label"])) for r in rows]) if labelled else 0
        echo("  rank  distance  " + (f"{'label':<{width}}  " if labelled else "") + "path")
        for r in rows:
            label = f"{str(r['label']):<{width}}  " if labelled else ""
            echo(f"  {r['rank']:>4}  {r['distance']:8.4f}  {label}{r['path']}")
