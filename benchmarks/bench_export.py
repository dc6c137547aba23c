"""Export of a 100,352-dim feature store to Parquet (and .npy): time and peak RSS by rows.

The stores are NOT made by a CNN: random rows (the width of un-pooled
ResNet50 features, 7x7x2048 = 100,352; float16 by default, as seed 004's
stores) are written with :class:`~skbottleneck.store.StoreWriter`, 500
rows at a time, with labels, paths and content keys. Each export then
runs in a fresh subprocess that reports its peak RSS (``VmHWM``), so the
figures are the export's alone. Bounded memory means a flat peak RSS as
the rows grow (one chunk at a time: a 16 MiB row group for Parquet, whose
encoder needs about 8 times its bytes; 64 MiB for ``.npy``).

    python benchmarks/bench_export.py [--sizes 2000 10000] [--dtype float16]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, markdown_table, peak_rss_mib, write_result  # noqa: E402

N_FEATURES = 100_352


def build_store(path, n_rows, dtype):
    """A store of ``n_rows`` random rows written with StoreWriter (no CNN)."""
    from skbottleneck.store import StoreWriter

    rng = np.random.default_rng(0)
    w = StoreWriter(path, paths=[f"img/{i:06d}.jpg" for i in range(n_rows)],
                    labels=np.array(["cat", "dog"])[np.arange(n_rows) % 2],
                    keys=[rng.bytes(32) for _ in range(n_rows)], n_features=N_FEATURES,
                    dtype=dtype, overwrite=True)
    if w.finished:  # the same store, left by an earlier run
        return
    for start in range(0, n_rows, 500):
        stop = min(n_rows, start + 500)
        w.write_rows(np.arange(start, stop),
                     rng.standard_normal((stop - start, N_FEATURES), dtype=np.float32))
    w.finalize().close()


def export_once(store_path, out_path):
    """Run in a fresh process: export, print JSON with seconds and peak RSS."""
    import pandas  # noqa: F401 - pyarrow imports it when it builds the label column
    import pyarrow  # noqa: F401 - imported before the baseline, as the export needs it

    from skbottleneck.store import FeatureStore

    baseline = peak_rss_mib()
    with FeatureStore(store_path) as store:
        start = time.perf_counter()
        getattr(store, "to_parquet" if out_path.endswith(".parquet") else "to_numpy")(out_path)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib(),
                      "baseline_mib": baseline}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--export", nargs=2, metavar=("STORE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        return export_once(*args.export)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        store = WORK / f"export_{n}_{args.dtype}.h5"
        t = time.perf_counter()
        build_store(store, n, args.dtype)
        print(f"built {store} ({os.path.getsize(store) / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        for suffix in (".parquet", ".npy"):
            out = WORK / f"export_{n}{suffix}"
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
            load = os.getloadavg()[0]
            done = subprocess.run([sys.executable, __file__, "--export", str(store), str(out)],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"export of {store} failed:\n{done.stderr}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            size = os.path.getsize(out)
            rows.append((f"{n:,}", suffix[1:], f"{r['seconds']:.1f}",
                         f"{n * N_FEATURES * np.dtype(args.dtype).itemsize / 2**20 / r['seconds']:.0f}",
                         f"{size / 2**30:.2f}", f"{r['peak_rss_mib']:.0f}",
                         f"{r['baseline_mib']:.0f}",
                         f"{load:.1f} / {os.getloadavg()[0]:.1f}"))
            print(rows[-1], flush=True)
            out.unlink()
            labels = out.with_name(out.stem + ".labels.npy")
            if labels.exists():
                labels.unlink()
        store.unlink()
    body = (
        f"Stores of random {args.dtype} rows of {N_FEATURES:,} features written with "
        "StoreWriter (not a CNN), with labels, paths and 32-byte keys; each export in a fresh "
        "process, default chunks (Parquet: 16 MiB of stored rows, one row group; .npy: 64 MiB), "
        "snappy compression for Parquet. Peak RSS is the export process's VmHWM; 'before' is the same process "
        "after importing skbottleneck, pyarrow and pandas (pyarrow imports it to build the label column), before opening the store.\n\n"
        + markdown_table(("rows", "format", "seconds", "MiB/s", "file GiB", "peak RSS MiB",
                          "before MiB", "load before / after"), rows)
        + f"\n\nThe load columns are the machine's 1-minute load average ({os.cpu_count()} "
        "cores) before and after each export: other jobs share this machine, and the "
        "seconds grow with the load; the peak RSS does not depend on it.")
    write_result("bench_export", "Export of a 100,352-dim store to Parquet and .npy", body,
                 libs=("numpy", "h5py", "pyarrow"))


if __name__ == "__main__":
    main()
