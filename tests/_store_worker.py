"""Subprocess worker for the crash-safety and concurrency tests of the store.

Features are synthetic and deterministic (a function of the content key),
so any run, interrupted or not, must produce the same bits. Progress is
printed line by line (flushed) so that the parent can kill the worker at a
chosen point.

Commands::

    extract   --store PATH --cache DIR --n N --d D [--batch B] [--sleep S]
              [--pause-before S] [--pause-after S] [--go FILE] [--dtype float32]
              [--no-wait]
              like CNNFeatureTransformer.extract: cache lookups, "CNN" for the
              misses (sleep S per batch), cache writes, store rows, finalize.
              A pause before finalize's rename ends early when FILE exists.
              The store's writer waits for another one (unless --no-wait).
    fill      --store PATH --n N --d D --limit BYTES --at {create,rows}
              write a store under RLIMIT_FSIZE=BYTES (SIGXFSZ ignored), set
              before the first row (data.h5 cannot be created) or after the
              first batch (later rows cannot be written); prints the OSError
              as JSON (type, errno, filename, store, message).
    write     --cache DIR --d D --first A --last B [--batch B] [--seed S]
              [--compact-every K]
              write keys A..B-1 into the cache in a shuffled order.
    compact   --cache DIR --d D [--seconds T]
              compact(min_shards=2) in a loop for T seconds (once if T=0).
    read      --cache DIR --d D --seconds T
              look up and read random keys for T seconds, checking values.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from skbottleneck.cache import FeatureCache  # noqa: E402
from skbottleneck.store import StoreWarning, StoreWriter  # noqa: E402


def synthetic_key(i):
    """Content key of synthetic image ``i``."""
    return hashlib.blake2b(f"image-{i}".encode(), digest_size=20).digest()


def synthetic_features(keys, d):
    """Deterministic float32 features of each key (the "CNN")."""
    out = np.empty((len(keys), d), dtype=np.float32)
    for j, k in enumerate(keys):
        rng = np.random.default_rng(int.from_bytes(k[:8], "little"))
        out[j] = rng.standard_normal(d, dtype=np.float32)
    return out


def fingerprint(d):
    return {"backbone": "synthetic", "layer": "pool", "pooling": "avg", "n_features": d,
            "format_version": 1}


def dataset(n):
    paths = [f"/data/imgs/img_{i:05d}.jpg" for i in range(n)]
    labels = np.array([f"class_{i % 3}" for i in range(n)])
    keys = [synthetic_key(i) for i in range(n)]
    return paths, labels, keys


METADATA = {"backbone": "synthetic", "weights_hash": "0" * 16, "keras_version": "none"}


def say(*words):
    print(*words, flush=True)


def cmd_extract(args):
    paths, labels, keys = dataset(args.n)
    if args.pause_before or args.pause_after:
        _pause_around_finalize(os.path.abspath(args.store), args.pause_before, args.pause_after,
                               args.go)
    cache = FeatureCache(args.cache, fingerprint(args.d), dtype=args.dtype, metadata=METADATA)
    writer = StoreWriter(args.store, paths=paths, labels=labels, keys=keys, n_features=args.d,
                         dtype=args.dtype, metadata=METADATA,
                         **({"wait": False} if args.no_wait else {}))
    rows = writer.missing_rows()
    say("START", len(rows))
    for b, a in enumerate(range(0, len(rows), args.batch)):
        batch = rows[a:a + args.batch]
        bkeys = [keys[r] for r in batch]
        found = cache.lookup(bkeys)
        feats = np.empty((len(batch), args.d), dtype=np.float32)
        if found.any():
            feats[found] = cache.read([k for k, f in zip(bkeys, found) if f])
        if not found.all():
            miss = [k for k, f in zip(bkeys, found) if not f]
            time.sleep(args.sleep)
            feats[~found] = synthetic_features(miss, args.d)
            cache.write(miss, feats[~found])
        writer.write_rows(batch, feats)
        say("BATCH", b)
    say("FINALIZE")
    writer.finalize()
    cache.compact(min_shards=4)
    say("DONE")


def _pause_around_finalize(store_path, before, after, go=None):
    """Sleep just before (or until ``go`` exists) and just after finalize's rename
    (to be killed there)."""
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if os.path.abspath(os.fspath(dst)) != store_path:
            return real_replace(src, dst, *a, **kw)
        say("RENAME-BEFORE")
        deadline = time.monotonic() + before
        while time.monotonic() < deadline and not (go and os.path.exists(go)):
            time.sleep(0.01)
        real_replace(src, dst, *a, **kw)
        say("RENAME-AFTER")
        time.sleep(after)

    os.replace = replace


def cmd_fill(args):
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    paths, labels, keys = dataset(args.n)
    writer = StoreWriter(args.store, paths=paths, labels=labels, n_features=args.d)
    feats = synthetic_features(keys, args.d)
    if args.at == "rows":
        writer.write_rows(np.arange(args.batch), feats[:args.batch])
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.limit, resource.RLIM_INFINITY))
    try:
        writer.write_rows(np.arange(args.n), feats)
    except OSError as e:
        say(json.dumps({"type": type(e).__name__, "errno": e.errno, "filename": e.filename,
                        "store": getattr(e, "store", None), "message": str(e)}))
        return
    say("NO ERROR")
    sys.exit(1)


def cmd_write(args):
    cache = FeatureCache(args.cache, fingerprint(args.d))
    rng = np.random.default_rng(args.seed)
    ids = rng.permutation(np.arange(args.first, args.last))
    for b, a in enumerate(range(0, len(ids), args.batch)):
        bkeys = [synthetic_key(int(i)) for i in ids[a:a + args.batch]]
        cache.write(bkeys, synthetic_features(bkeys, args.d))
        if args.compact_every and b % args.compact_every == args.compact_every - 1:
            cache.compact(min_shards=3)
    say("DONE", len(cache))


def cmd_compact(args):
    cache = FeatureCache(args.cache, fingerprint(args.d))
    deadline = time.monotonic() + args.seconds
    merged = cache.compact(min_shards=2)
    while time.monotonic() < deadline:
        merged += cache.compact(min_shards=2)
        time.sleep(0.01)
    say("DONE", merged)


def cmd_read(args):
    cache = FeatureCache(args.cache, fingerprint(args.d))
    rng = np.random.default_rng(args.seed)
    deadline = time.monotonic() + args.seconds
    n_checked = 0
    while time.monotonic() < deadline:
        keys = [synthetic_key(int(i)) for i in rng.integers(0, args.universe, 64)]
        found = cache.lookup(keys)
        present = [k for k, f in zip(keys, found) if f]
        if present:
            got = cache.read(present)
            if not np.array_equal(got, synthetic_features(present, args.d)):
                say("MISMATCH")
                sys.exit(3)
            n_checked += len(present)
    say("DONE", n_checked)


def main(argv=None):
    warnings.simplefilter("error", StoreWarning)  # no damaged file may ever be seen
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["extract", "fill", "write", "compact", "read"])
    ap.add_argument("--store")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--pause-before", type=float, default=0.0)
    ap.add_argument("--pause-after", type=float, default=0.0)
    ap.add_argument("--go")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--at", choices=["create", "rows"], default="rows")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compact-every", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0.0)
    ap.add_argument("--universe", type=int, default=1000)
    args = ap.parse_args(argv)
    {"extract": cmd_extract, "fill": cmd_fill, "write": cmd_write, "compact": cmd_compact,
     "read": cmd_read}[args.command](args)


if __name__ == "__main__":
    main()
