"""What verifying the checksum of every cached row costs.

Writes N cached rows of D float32 features (batches of 32 rows, as an
extraction does), then times ``FeatureCache.lookup`` + ``read`` of all of
them in a shuffled order, through a warm index and a warm page cache, with
verification and without, in interleaved rounds (median of each). "Without"
is the path of a shard written before the checksums existed (the index
forgets the shards' digests for that round): the same reads, no hashing.
Measured on the 625 small shards as written, then after ``compact()`` (one
merged shard, what a re-transform reads after the first run), and for
``read_available``. Also the hashing alone (the least verification can add: XXH3 of every row,
once) and the cost of computing the checksums when writing. On a shared
machine the read timings are noisy: read the ratios with the hashing line.

With ``--transform N``, also a real cached re-transform: MobileNetV2
(random weights, 32 px input, 1,280 features) on N generated 32x32 PNG
files, the cache filled by a first transform, then ``transform`` again
(all hits), verified and unverified interleaved.

Target: a cached re-transform stays >= 20,000 images/s (80,205 img/s
measured for 1,280-dim features before the checksums); reading the cache
is one part of it.

    python benchmarks/bench_cache_checksums.py [--n 20000] [--d 1280] [--rounds 15]
                                               [--transform 20000]
"""

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, WORK, versions  # noqa: E402

from skbottleneck.cache import FeatureCache  # noqa: E402
from skbottleneck.cache._checksums import key_words, row_digests  # noqa: E402
from skbottleneck.cache._index import _indexes, get_index  # noqa: E402


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def set_verification(index, on, stash):
    """Give the index's shards their digests back (on), or forget them (off)."""
    with index.lock:
        for shard in index.shards.values():
            if on:
                shard.digests = stash[shard.name]
            else:
                stash.setdefault(shard.name, shard.digests)
                shard.digests = None


def interleaved(indexes, fn, rounds):
    """Medians of ``fn`` with and without verification, rounds interleaved.

    ``indexes``: the in-memory indexes of the cache folders ``fn`` reads.
    Returns ``{True: (wall_s, cpu_s), False: (wall_s, cpu_s)}``; the CPU
    time (of this process, all threads) is what a busy machine disturbs
    least.
    """
    stash, times = {}, {True: ([], []), False: ([], [])}
    for on in (False, True):
        for index in indexes:
            set_verification(index, on, stash)
    fn()  # warm-up: page cache, index
    for r in range(rounds):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            for index in indexes:
                set_verification(index, on, stash)
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[on][0].append(time.perf_counter() - t)
            times[on][1].append(time.process_time() - c)
    for index in indexes:
        set_verification(index, True, stash)
    return {on: (statistics.median(w), statistics.median(c)) for on, (w, c) in times.items()}


def row(say, what, n, ts):
    (won, con), (woff, coff) = ts[True], ts[False]
    say(f"{what:<42} {won * 1e3:>8.1f} {woff * 1e3:>8.1f} {won / woff:>6.2f} "
        f"{con * 1e3:>8.1f} {coff * 1e3:>8.1f} {con / coff:>6.2f} {n / won:>10,.0f} "
        f"{n / con:>10,.0f}")


def transform_rates(n_images, rounds, say):
    """Images/s of a cached re-transform (all hits), verified and unverified."""
    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.datasets import load_image_folder, make_photo_folder

    folder = WORK / f"png_32x32_{n_images}"
    if not folder.exists():
        make_photo_folder(folder, classes=7, n_per_class=-(-n_images // 7), size=(32, 32),
                          format="png", random_state=0)
    paths = load_image_folder(folder)[0][:n_images]
    cache_dir = tempfile.mkdtemp(prefix="skb-bench-checksums-tf-")
    try:
        est = CNNFeatureTransformer("mobilenet_v2", weights=None, input_size=32, random_state=0,
                                    cache_dir=cache_dir, batch_size=64).fit()
        X = est.transform(paths)  # fills the cache (and compacts it)
        dirs = [os.path.join(cache_dir, name) for name in os.listdir(cache_dir)]
        indexes = [get_index(d, "float32") for d in dirs
                   if os.path.isdir(os.path.join(d, "shards"))]

        def again():
            assert np.array_equal(est.transform(paths), X)

        ts = interleaved(indexes, again, rounds)
        row(say, f"cached re-transform, {len(paths):,} img x {X.shape[1]}", len(paths), ts)
        say(f"{'':<42} unverified: {len(paths) / ts[False][0]:,.0f} images/s (wall), "
            f"{len(paths) / ts[False][1]:,.0f} (CPU)")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--transform", type=int, default=0, metavar="N",
                    help="also time a cached re-transform of N images (TensorFlow)")
    ap.add_argument("--output", default=str(RESULTS / "bench_cache_checksums.txt"))
    args = ap.parse_args()
    n, d, batch = args.n, args.d, args.batch
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    keys = [rng.bytes(20) for _ in range(n)]
    order = rng.permutation(n)
    query = [keys[i] for i in order]
    lines = []

    def say(line=""):
        line = line.rstrip()
        print(line, flush=True)
        lines.append(line)

    root = tempfile.mkdtemp(prefix="skb-bench-checksums-")
    try:
        cache = FeatureCache(root, {"backbone": "bench", "d": d})
        t = time.perf_counter()
        for a in range(0, n, batch):
            cache.write(keys[a:a + batch], X[a:a + batch])
        write_s = time.perf_counter() - t
        n_shards = -(-n // batch)

        # checksum cost at write time: what write() adds to each batch
        key_arr = np.frombuffer(b"".join(keys), np.uint8).reshape(n, 20)
        sums = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for a in range(0, n, batch):
                row_digests(X[a:a + batch]) ^ key_words(key_arr[a:a + batch])
            sums.append(time.perf_counter() - t)
        sum_s = statistics.median(sums)

        def lookup_read():
            assert cache.lookup(query).all()
            out = cache.read(query)
            assert np.array_equal(out[:3], X[order[:3]])

        def read_available():
            out, found = cache.read_available(query)
            assert found.all()

        say(f"# FeatureCache: cost of verifying a checksum per row "
            f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC})")
        say(f"machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} "
            f"{platform.release()}")
        say(f"versions: {versions('numpy', 'h5py', 'xxhash')}")
        say(f"command: python benchmarks/bench_cache_checksums.py --n {n} --d {d} "
            f"--batch {batch} --rounds {args.rounds}"
            + (f" --transform {args.transform}" if args.transform else ""))
        say(f"rows: {n:,} x {d} float32 ({X.nbytes / 2**20:.0f} MiB), keys shuffled, "
            f"warm index and page cache; median of {args.rounds} interleaved rounds "
            f"({max(3, args.rounds // 3)} for the re-transform)")
        say(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        say()
        say(f"{'':<42} {'wall time (ms)':^24} {'CPU time (ms)':^24} {'rows/s verified':^21}")
        say(f"{'what':<42} {'checked':>8} {'not':>8} {'ratio':>6} {'checked':>8} {'not':>8} "
            f"{'ratio':>6} {'wall':>10} {'CPU':>10}")
        row(say, f"lookup+read, {n_shards} shards of {batch} rows", n,
            interleaved([cache._index], lookup_read, args.rounds))
        _indexes.clear()
        merged = FeatureCache(root, {"backbone": "bench", "d": d}).compact(min_shards=2)
        cache = FeatureCache(root, {"backbone": "bench", "d": d})
        cache.lookup(query[:1])
        n_now = len(os.listdir(os.path.join(cache.path, "shards")))
        row(say, f"lookup+read, compacted ({merged} -> {n_now} shard)", n,
            interleaved([cache._index], lookup_read, args.rounds))
        row(say, "read_available, compacted", n,
            interleaved([cache._index], read_available, args.rounds))
        hashes = []
        for _ in range(args.rounds):
            t, c = time.perf_counter(), time.process_time()
            row_digests(X)
            hashes.append((time.perf_counter() - t, time.process_time() - c))
        hw, hc = (statistics.median(h[i] for h in hashes) for i in (0, 1))
        say(f"{'the hashing alone (XXH3 of every row)':<42} {hw * 1e3:>8.1f} {'':>8} {'':>6} "
            f"{hc * 1e3:>8.1f} {'':>8} {'':>6} {n / hw:>10,.0f} {n / hc:>10,.0f}")
        if args.transform:
            transform_rates(args.transform, max(3, args.rounds // 3), say)
        say()
        say(f"write: {write_s / n_shards * 1e3:.2f} ms per batch of {batch} rows "
            f"(fsync included); of which checksums {sum_s / n_shards * 1e3:.3f} ms "
            f"({sum_s / write_s * 100:.1f}%; {n / sum_s:,.0f} rows/s)")
        say("target: a cached re-transform >= 20,000 images/s (80,205 img/s before); "
            "reading the cache is one part of it")
        say(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
