"""``skbottleneck export``: a feature store written to Parquet or ``.npy``, streamed in chunks."""

import os
import time

from ..store import FeatureStore
from ..utils import format_bytes
from ._output import EXIT_OK, CLIError, echo

__all__ = ["cmd_export"]

#: Output suffix -> the FeatureStore method that writes it.
_FORMATS = {".parquet": "to_parquet", ".pq": "to_parquet", ".npy": "to_numpy"}


def cmd_export(args):
    """Write ``args.store`` to ``args.to`` (its suffix picks Parquet or NumPy)."""
    suffix = os.path.splitext(args.to)[1].lower()
    if suffix not in _FORMATS:
        raise CLIError(f"--to {args.to!r}: expected a .parquet or .npy file name.")
    if not os.path.isfile(args.store):
        raise CLIError(f"feature store {args.store!r} does not exist.")
    start = time.perf_counter()
    with FeatureStore(args.store) as store:
        options = {} if args.chunk_size is None else {"chunk_size": args.chunk_size}
        path = getattr(store, _FORMATS[suffix])(args.to, **options)
        n_rows, n_features, dtype = len(store), store.n_features, store.dtype
    echo(f"wrote {n_rows} rows of {n_features} {dtype.name} features to {path} "
         f"({format_bytes(os.path.getsize(path))}, {time.perf_counter() - start:.1f} s)")
    return EXIT_OK
