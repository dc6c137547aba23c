"""Speed of the feature cache and the dataset store (not a test; run by hand).

    .venv/bin/python tests/_bench_store.py [--n 10000] [--d 1280]

Prints medians of 3 runs (warm page cache): cache writes per batch, cold
index build, lookup+read per row with a warm index (313 shards of 32 rows,
then after compaction), store writing and reading.
"""

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np

from skbottleneck.cache._index import _indexes
from skbottleneck.cache import FeatureCache
from skbottleneck.store import StoreWriter


def median_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    n, d, batch = args.n, args.d, args.batch
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"n={n}, d={d}, batch={batch}")
    root = tempfile.mkdtemp(prefix="skb-bench-")
    try:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, d), dtype=np.float32)
        keys = [i.to_bytes(4, "little") + bytes(16) for i in range(n)]
        fp = {"backbone": "bench", "d": d}

        cache = FeatureCache(root, fp)
        t = time.perf_counter()
        for a in range(0, n, batch):
            cache.write(keys[a:a + batch], X[a:a + batch])
        wt = time.perf_counter() - t
        n_shards = -(-n // batch)
        print(f"cache.write: {wt / n_shards * 1e3:.2f} ms per batch of {batch} "
              f"({n_shards} shards, fsync included)")

        order = rng.permutation(n)
        qkeys = [keys[i] for i in order]

        def cold():
            _indexes.clear()
            FeatureCache(root, fp).lookup(qkeys[:1])

        print(f"cold index build ({n_shards} shards): {median_time(cold) * 1e3:.1f} ms")
        c2 = FeatureCache(root, fp)
        c2.lookup(qkeys[:1])

        def lookup_read():
            found = c2.lookup(qkeys)
            assert found.all()
            out = c2.read(qkeys)
            assert np.array_equal(out[:5], X[order[:5]])

        t_unc = median_time(lookup_read)
        print(f"lookup+read of {n} keys (shuffled), {n_shards} shards, warm index: "
              f"{t_unc * 1e3:.1f} ms = {t_unc / n * 1e6:.2f} us/row = {n / t_unc:,.0f} rows/s")
        t_lookup = median_time(lambda: c2.lookup(qkeys))
        print(f"  of which lookup: {t_lookup / n * 1e6:.2f} us/key")

        t = time.perf_counter()
        merged = c2.compact(min_shards=2)
        print(f"compact: {merged} shards merged in {time.perf_counter() - t:.2f} s "
              f"-> {len(os.listdir(os.path.join(c2.path, 'shards')))} shard(s)")
        cold_c = median_time(cold)
        print(f"cold index build (compacted): {cold_c * 1e3:.1f} ms")
        c3 = FeatureCache(root, fp)
        c3.lookup(qkeys[:1])
        c2 = c3
        t_c = median_time(lookup_read)
        print(f"lookup+read of {n} keys (shuffled), compacted, warm index: "
              f"{t_c * 1e3:.1f} ms = {t_c / n * 1e6:.2f} us/row = {n / t_c:,.0f} rows/s")
        t_c2 = median_time(lambda: c2.read(keys))
        print(f"read of {n} keys in stored order, compacted: {t_c2 / n * 1e6:.2f} us/row")

        # dataset store
        path = os.path.join(root, "features.h5")
        paths = [f"img_{i:06d}.jpg" for i in range(n)]
        w = StoreWriter(path, paths=paths, labels=np.arange(n) % 10, n_features=d)
        t = time.perf_counter()
        for a in range(0, n, batch):
            w.write_rows(np.arange(a, min(n, a + batch)), X[a:a + batch])
        wt = time.perf_counter() - t
        print(f"StoreWriter.write_rows: {wt / n_shards * 1e3:.2f} ms per batch of {batch} "
              f"({X.nbytes / wt / 1e6:.0f} MB/s)")
        t = time.perf_counter()
        store = w.finalize()
        print(f"finalize: {(time.perf_counter() - t) * 1e3:.1f} ms")
        mb = X.nbytes / 1e6

        def epoch(shuffle):
            for Xc, yc in store.iter_chunks(1024, shuffle=shuffle, random_state=0):
                pass

        for shuffle in (False, True):
            te = median_time(lambda: epoch(shuffle))
            print(f"iter_chunks(1024, shuffle={shuffle}): {mb / te:,.0f} MB/s "
                  f"({n / te:,.0f} rows/s)")
        idx = rng.permutation(n)[: n // 2]
        tr = median_time(lambda: store.read_rows(idx))
        print(f"read_rows of {len(idx)} random rows: {len(idx) * d * 4 / tr / 1e6:,.0f} MB/s")
        assert np.array_equal(store.read_rows(idx)[0], X[idx])
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
