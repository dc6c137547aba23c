"""Which approximate-nearest-neighbour library skbottleneck's index uses, by measurement.

The same clustered synthetic set (``benchmarks/_clustered.py``: unit rows,
cosine = inner product) indexed by faiss-cpu (IVF + PQ, compressed; HNSW),
hnswlib (HNSW) and usearch (HNSW, vectors kept as float16 or int8). Each
method runs in its own process, so its peak RSS is its own (minus the
data, measured before the build). Reported: build time, RSS added by the
build, index size, query latency per image (one batch of queries), and
recall@10 against the exact answer. IVF-PQ's candidates are re-ranked
with the exact vectors (as ``find_similar`` does from the store): the
re-ranked recall is the one a user sees.

    python benchmarks/bench_ann_libraries.py [--n 100000] [--d 512] [--queries 200]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _clustered import clustered, queries  # noqa: E402
from _common import RESULTS, machine, versions  # noqa: E402

METHODS = ["faiss_ivfpq", "faiss_hnsw", "hnswlib", "usearch_f16", "usearch_i8"]
K = 10


def _unit(X):
    X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-12
    return X


def _rss_mib():
    """Current resident memory of this process (MiB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _size(path):
    return os.path.getsize(path) / 2**20


def run(method, n, d, n_queries, tmp):
    X = _unit(clustered(n, d))
    Q = _unit(queries(n_queries, d))
    truth = np.argsort(-(Q @ X.T), axis=1)[:, :K]
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    path = os.path.join(tmp, method)
    if method.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(os.cpu_count())
        if method == "faiss_ivfpq":
            nlist = 1 << int(round(np.log2(np.sqrt(n))))
            index = faiss.index_factory(d, f"IVF{nlist},PQ{min(256, d // 4)}x4fs",
                                        faiss.METRIC_INNER_PRODUCT)
            sample = X[np.random.default_rng(0).choice(n, min(n, 65536), replace=False)]
            faiss.omp_set_num_threads(1)  # as build_index trains (see its comment)
            index.train(sample)
            faiss.omp_set_num_threads(os.cpu_count())
        else:
            index = faiss.index_factory(d, "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        for s in range(0, n, 65536):
            index.add(X[s:s + 65536])
        build = time.perf_counter() - t0
        rss = _rss_mib() - rss0
        faiss.write_index(index, path)
        if method == "faiss_ivfpq":
            index.nprobe = 32
            t0 = time.perf_counter()
            _, cand = index.search(Q, 10 * K)
            rerank = np.stack([c[np.argsort(-(X[c] @ q))][:K] for q, c in zip(Q, cand)])
            latency = (time.perf_counter() - t0) / n_queries
            raw = cand[:, :K]
            found = rerank
        else:
            index.hnsw.efSearch = 64
            t0 = time.perf_counter()
            _, found = index.search(Q, K)
            latency = (time.perf_counter() - t0) / n_queries
            raw = found
    elif method == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(max_elements=n, M=16, ef_construction=100)
        for s in range(0, n, 65536):
            index.add_items(X[s:s + 65536], np.arange(s, min(n, s + 65536)))
        build = time.perf_counter() - t0
        rss = _rss_mib() - rss0
        index.save_index(path)
        index.set_ef(64)
        t0 = time.perf_counter()
        found, _ = index.knn_query(Q, k=K)
        latency = (time.perf_counter() - t0) / n_queries
        raw = found
    else:
        from usearch.index import Index

        index = Index(ndim=d, metric="ip", dtype=method.split("_")[1], connectivity=16,
                      expansion_add=100, expansion_search=64)
        for s in range(0, n, 65536):
            index.add(np.arange(s, min(n, s + 65536)), X[s:s + 65536])
        build = time.perf_counter() - t0
        rss = _rss_mib() - rss0
        index.save(path)
        t0 = time.perf_counter()
        found = index.search(Q, K).keys
        latency = (time.perf_counter() - t0) / n_queries
        raw = found
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)])
    raw_recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(raw, truth)])
    return {"method": method, "build_s": build, "rss_mib": rss, "size_mib": _size(path),
            "latency_ms": 1000 * latency, "recall": recall, "raw_recall": raw_recall}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--method")
    args = p.parse_args()
    if args.method:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run(args.method, args.n, args.d, args.queries, tmp)))
        return
    rows = []
    for method in METHODS:
        out = subprocess.run([sys.executable, __file__, "--method", method, "--n", str(args.n),
                              "--d", str(args.d), "--queries", str(args.queries)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    lines = [f"# bench_ann_libraries ({datetime.date.today()})", "",
             f"Machine: {machine()}; {versions('numpy', 'faiss-cpu', 'hnswlib', 'usearch')}.",
             f"{args.n:,} clustered synthetic rows x {args.d} (unit, inner product), "
             f"{args.queries} queries in one batch, recall@10 against the exact answer. "
             "faiss IVF-PQ: IVF(2^round(log2 sqrt n)),PQ(d/4)x4fs (build_index's auto), nprobe 32, "
             "100 candidates "
             "re-ranked with the exact vectors; HNSW: M 16-32, efConstruction 80-100, ef 64. "
             "The machine was shared (load ~10 on 2 cores): compare within this table.", "",
             "| method | build (s) | memory held by the index after the build (MiB, RSS) | "
             "index on disk (MiB) | query (ms/image) | recall@10 | recall@10 before re-ranking |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['build_s']:.1f} | {r['rss_mib']:.0f} | "
                     f"{r['size_mib']:.1f} | {r['latency_ms']:.3f} | {r['recall']:.3f} | "
                     f"{r['raw_recall']:.3f} |")
    (RESULTS / "bench_ann_libraries.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
