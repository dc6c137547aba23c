"""``skbottleneck index``: build (or bring up to date) the approximate index beside a store."""

import time

from ..similarity import build_index
from ._files import open_store
from ._output import EXIT_OK, echo

__all__ = ["cmd_index"]


def cmd_index(args):
    """Build the index of ``STORE``, add the images appended since, or say it is up to date."""
    store = open_store(args.store)
    t0 = time.perf_counter()
    index = build_index(store, factory=args.factory, nprobe=args.nprobe,
                        sample_size=args.sample_size, rebuild=args.rebuild,
                        verbose=not args.quiet)
    meta = index.meta
    what = ("up to date" if index.n_added == 0 else
            f"{index.n_added} images added" if index.n_added < index.n_images else "built")
    echo(f"index of {index.n_images} images ({meta['factory']}, nprobe {meta['nprobe']}) "
         f"{what} in {time.perf_counter() - t0:.1f} s: {index.path}")
    return EXIT_OK
