"""The approximate index against the exact streamed scan, at 100,000 and 1,000,000 images.

Data: the clustered synthetic set of ``benchmarks/_clustered.py`` (1,000
clusters in a 48-dim latent space, ReLU-mapped to 512 or 1,280 features,
shaped like pooled CNN features), written to a real float16 HDF5 store
chunk by chunk. Queries: fresh draws from the same clusters.

Per configuration, each step in its own process so that its peak RSS is
its own: ``build_index`` (default ``factory="auto"``): time, peak RSS,
index size on disk; then ``find_similar(k=10)`` from the index (candidates
re-ranked with the exact stored rows) and with ``exact=True,
in_memory=False`` (the streamed scan): latency per query image (one batch
of queries) and recall@10 of the index against the exact answer.

    python benchmarks/bench_similarity.py [--sizes 100000,1000000] [--dims 512,1280]
                                          [--queries 100]
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _clustered import clustered_chunks, queries  # noqa: E402
from _common import RESULTS, WORK, machine, peak_rss_mib, versions  # noqa: E402


def _store(n, d):
    from skbottleneck.store import StoreWriter

    path = WORK / f"similarity_{n}x{d}.h5"
    if path.exists():
        return path
    WORK.mkdir(exist_ok=True)
    w = StoreWriter(path, paths=[f"img{i:07d}.jpg" for i in range(n)], n_features=d,
                    dtype="float16")
    for start, X in clustered_chunks(n, d):
        w.write_rows(np.arange(start, start + len(X)), X)
    w.finalize()
    return path


def step(name, path, d, n_queries, candidates=None):
    from skbottleneck import build_index, find_similar

    if name == "build":
        t0 = time.perf_counter()
        index = build_index(path, rebuild=True)
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(index.path).iterdir()) / 2**20
        return {"build_s": seconds, "build_rss_mib": peak_rss_mib(), "index_mib": size,
                "factory": index.meta["factory"], "nprobe": index.meta["nprobe"]}
    Q = queries(n_queries, d)
    exact = name == "exact"
    find_similar(path, Q[:2], k=10, exact=exact, in_memory=False)  # warm: imports, page cache
    t0 = time.perf_counter()
    result = find_similar(path, Q, k=10, exact=exact, in_memory=False, n_candidates=candidates)
    seconds = time.perf_counter() - t0
    np.save(WORK / f"_{name}.npy", result.indices)
    return {f"{name}_ms": 1000 * seconds / n_queries, f"{name}_rss_mib": peak_rss_mib(),
            f"{name}_method": result.method}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--dims", default="512,1280")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--candidates", type=int, help="n_candidates of find_similar (default: its own)")
    p.add_argument("--out", default="bench_similarity.md")
    p.add_argument("--step")
    p.add_argument("--path")
    p.add_argument("--d", type=int)
    args = p.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.path, args.d, args.queries, args.candidates)))
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for d in [int(s) for s in args.dims.split(",")]:
            t0 = time.perf_counter()
            path = _store(n, d)
            row = {"n": n, "d": d, "store_mib": path.stat().st_size / 2**20,
                   "write_s": time.perf_counter() - t0}
            for name in ("build", "index", "exact"):
                out = subprocess.run([sys.executable, __file__, "--step", name, "--path",
                                      str(path), "--d", str(d), "--queries", str(args.queries)]
                                     + (["--candidates", str(args.candidates)] if args.candidates
                                        else []),
                                     capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(out.stderr)
                row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            found, truth = np.load(WORK / "_index.npy"), np.load(WORK / "_exact.npy")
            row["recall"] = float(np.mean([len(set(a) & set(b)) / 10
                                           for a, b in zip(found, truth)]))
            rows.append(row)
            print(json.dumps(row), flush=True)
            os.unlink(path)
            shutil.rmtree(str(path) + ".index", ignore_errors=True)
    lines = [f"# bench_similarity ({datetime.date.today()})", "",
             f"Machine: {machine()}; {versions('numpy', 'faiss-cpu', 'h5py')}. The machine was "
             "shared with other jobs (load average ~10 on 2 cores): read the ratios.",
             "Data: clustered synthetic features (benchmarks/_clustered.py), float16 HDF5 store; "
             f"{args.queries} query images in one batch, k=10; build_index defaults; "
             f"find_similar re-ranks {args.candidates or 'the default number of'} candidates with the "
             "exact stored rows; "
             "the exact search is the streamed scan (in_memory=False). RSS: peak of the process "
             "(Python + numpy + h5py + faiss included).", "",
             "| images | dims | store (MiB) | factory (nprobe) | build (s) | build peak RSS (MiB) "
             "| index on disk (MiB) | index query (ms/image) | exact scan (ms/image) | speed-up "
             "| recall@10 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['d']} | {r['store_mib']:.0f} | {r['factory']} ({r['nprobe']}) | "
            f"{r['build_s']:.1f} | {r['build_rss_mib']:.0f} | {r['index_mib']:.1f} | "
            f"{r['index_ms']:.2f} | {r['exact_ms']:.1f} | {r['exact_ms'] / r['index_ms']:.0f}x | "
            f"{r['recall']:.3f} |")
    out = RESULTS / args.out
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
