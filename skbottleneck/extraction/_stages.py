"""The stages an extraction plan runs through, besides the CNN itself.

- :class:`DecodePool`: reads each image file once, hashes its bytes (the
  cache key) and decodes and resizes those same bytes, in a small thread
  pool, a few batches ahead of the CNN (Pillow and hashing release the
  GIL), at a low thread priority so that decoding fills the CNN's gaps;
  remote images (URLs, object storage, tar shard members) are read by
  I/O threads of their own further ahead (:mod:`skbottleneck.remote`);
- :class:`Writer`: hands the sinks' writes (the array, the store, the
  cache) to one background thread, a bounded number in flight;
- :class:`RunStats`: the one place where time is counted and progress shown.
"""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from ..cache import content_key, file_keys, remember_file_key
from ..images import ImageError, load_image
from ..remote import is_remote, read_image_bytes

__all__ = ["DecodePool", "Loaded", "RunStats", "Writer", "content_keys", "default_decode_threads"]

#: Batches decoded ahead of the CNN.
PREFETCH_BATCHES = 2
#: Batches of remote images read ahead of the CNN (by the I/O threads).
READ_AHEAD_BATCHES = 4
#: Threads reading remote images (network reads wait, they do not compute).
IO_THREADS = 16
#: Writes queued on the background writer before the CNN waits for it.
MAX_PENDING_WRITES = 4


def default_decode_threads():
    """``min(4, cpu_count)`` decoding threads."""
    return max(1, min(4, os.cpu_count() or 1))


class RunStats:
    """Counts, per-stage seconds and the progress bar of one run.

    ``as_dict()`` gives ``n_images``, ``n_cached``, ``n_extracted``,
    ``n_failed``, ``read_s`` (reading image bytes, thread time), ``hash_s``,
    ``decode_s`` (thread time), ``cnn_s``,
    ``write_s``, ``wall_s`` and, once the CNN ran, ``bn_folded``.
    """

    def __init__(self, n_images):
        self.counts = {"n_images": int(n_images), "n_cached": 0, "n_extracted": 0, "n_failed": 0}
        self.seconds = {"read_s": 0.0, "hash_s": 0.0, "decode_s": 0.0, "cnn_s": 0.0,
                        "write_s": 0.0, "wall_s": 0.0}
        self.extra = {}
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._progress = None

    def start_progress(self, total, desc, verbose):
        """Show a progress bar (images/s) of ``total`` images when ``verbose``."""
        if verbose and total:
            from tqdm.auto import tqdm

            self._progress = tqdm(total=total, unit="img", desc=desc, smoothing=0.1,
                                  dynamic_ncols=True)

    def stop_progress(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    @contextmanager
    def timed(self, stage):
        """Add the time spent in the ``with`` block to ``<stage>_s`` (thread-safe)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(stage, time.perf_counter() - t)

    def add_time(self, stage, seconds):
        with self._lock:
            self.seconds[f"{stage}_s"] += seconds

    def count(self, name, n):
        self.counts[name] += int(n)

    def advance(self, n):
        if self._progress is not None:
            self._progress.update(n)

    def close(self):
        self.seconds["wall_s"] = time.perf_counter() - self._start
        self.stop_progress()

    def as_dict(self):
        return {**self.counts, **self.seconds, **self.extra}

    def summary(self):
        return ("{n_images} images: {n_cached} cached, {n_extracted} through the CNN, "
                "{n_failed} failed; read {read_s:.2f}s, hash {hash_s:.2f}s, "
                "decode {decode_s:.2f}s (thread time), CNN {cnn_s:.2f}s, write {write_s:.2f}s, wall {wall_s:.2f}s").format(**self.as_dict())


@dataclass
class Loaded:
    """What the decode pool made of one work item.

    ``key`` is the content key of the bytes that were read (None without a
    cache); ``image`` the decoded array, or None when the cache already
    holds features for ``key`` (nothing was decoded); ``error`` the
    :class:`~skbottleneck.ImageError` when the file could not be read.
    """

    key: bytes = None
    image: object = None
    error: object = None


class DecodePool:
    """Read, hash and decode images in a thread pool, ``PREFETCH_BATCHES`` ahead.

    Each file is opened once: its bytes are read (after ``fstat`` says it is
    a regular file), hashed into the content key when a cache is in use,
    and decoded from those same bytes, so that the features written under a
    key are always the features of the bytes with that key, even when the
    file is rewritten meanwhile. A file whose key the cache turns out to
    hold is not decoded.

    Parameters
    ----------
    n_threads : int
        Threads.
    size : (int, int)
        ``(height, width)`` of the decoded images.
    stats : RunStats
        Receives the hashing and decoding times (summed over the threads).
    cache : FeatureCache or None
        When given, keys are computed and looked up.
    views : ImageViews or None
        Decode these views of each image (``image`` is then their stack).
    unit_keys : callable or None
        Content key -> the cache keys of its views (all of them must be
        cached for the image to be skipped).
    """

    def __init__(self, n_threads, size, stats, cache=None, views=None, unit_keys=None,
                 storage_options=None, io_threads=None):
        self.n_threads = n_threads
        self.size = size
        self.stats = stats
        self.cache = cache
        self.views = views
        self.unit_keys = unit_keys or (lambda keys: list(keys))
        self.storage_options = storage_options
        self.io_threads = io_threads or IO_THREADS

    def read(self, path):
        """The bytes of ``path`` and its ``os.stat`` (None when remote); raises ImageError."""
        t = time.perf_counter()
        try:
            return read_image_bytes(path, self.storage_options)
        finally:
            self.stats.add_time("read", time.perf_counter() - t)

    def load(self, path, known_key=None, read=None):
        """Read ``path`` once; hash it; decode it unless the cache holds its key.

        ``read``: a future of :meth:`read` already under way (remote images
        are read in a pool of their own, ahead of decoding).
        """
        try:
            data, st = self.read(path) if read is None else read.result()
        except ImageError as e:
            return Loaded(error=e)
        key = None
        if self.cache is not None:
            t = time.perf_counter()
            key = content_key(data)
            remember_file_key(st, key)
            self.stats.add_time("hash", time.perf_counter() - t)
            if key != known_key and self.cache.lookup(self.unit_keys([key])).all():
                return Loaded(key=key)
        t = time.perf_counter()
        try:
            if self.views is not None:
                return Loaded(key=key, image=self.views.render(path, self.size, data=data))
            return Loaded(key=key, image=load_image(path, self.size, data=data))
        except ImageError as e:
            return Loaded(key=key, error=e)
        finally:
            self.stats.add_time("decode", time.perf_counter() - t)

    def map_batches(self, batches):
        """Yield, for each list of ``(path, known_key)`` in ``batches``, the
        list of :class:`Loaded` in the same order.

        Remote images (URLs, shard members) are read by ``io_threads``
        threads of their own, ``READ_AHEAD_BATCHES`` ahead, so that a
        decoding thread finds their bytes there rather than waiting on the
        network.
        """
        batches = list(batches)
        remote = any(is_remote(p) for batch in batches for p, _ in batch)
        io_pool = ThreadPoolExecutor(max_workers=self.io_threads) if remote else None
        reads = [None] * len(batches)

        def start_reads(i):
            if io_pool is not None and i < len(batches) and reads[i] is None:
                reads[i] = [io_pool.submit(self.read, p) if is_remote(p) else None
                            for p, _ in batches[i]]

        with ThreadPoolExecutor(max_workers=self.n_threads, initializer=_yield_to_the_cnn) as pool:
            submitted = [None] * len(batches)

            def submit(i):
                for j in range(i, i + READ_AHEAD_BATCHES + 1):
                    start_reads(j)
                pending = reads[i] or [None] * len(batches[i])
                submitted[i] = [pool.submit(self.load, p, k, r)
                                for (p, k), r in zip(batches[i], pending)]
                reads[i] = None

            for i in range(min(PREFETCH_BATCHES + 1, len(batches))):
                submit(i)
            try:
                for i in range(len(batches)):
                    if i + PREFETCH_BATCHES + 1 < len(batches):
                        submit(i + PREFETCH_BATCHES + 1)
                    futures, submitted[i] = submitted[i], None
                    yield [f.result() for f in futures]
            finally:
                for futures in submitted + reads:
                    for f in futures or ():
                        if f is not None:
                            f.cancel()
                if io_pool is not None:
                    io_pool.shutdown(wait=False, cancel_futures=True)


def content_keys(paths, storage_options):
    """Content keys of local files and remote images (read in threads); an
    exception instead of the key of one that cannot be read."""
    local = [i for i, p in enumerate(paths) if not is_remote(p)]
    keys = [None] * len(paths)
    for i, k in zip(local, file_keys([paths[i] for i in local])):
        keys[i] = k

    def one(p):
        try:
            return content_key(read_image_bytes(p, storage_options)[0])
        except ImageError as e:
            return e

    remote = [i for i, p in enumerate(paths) if is_remote(p)]
    if remote:
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            for i, k in zip(remote, pool.map(one, [paths[i] for i in remote])):
                keys[i] = k
    return keys


class Writer:
    """Runs the sinks' writes, in a background thread when ``background``.

    At most ``MAX_PENDING_WRITES`` writes wait at a time, so memory stays
    bounded however fast the CNN is; :meth:`flush` waits for all and
    re-raises the first error of a write.
    """

    def __init__(self, stats, *, background):
        self.stats = stats
        self._pool = ThreadPoolExecutor(max_workers=1) if background else None
        self._pending = []

    def _timed(self, fn, args):
        with self.stats.timed("write"):
            fn(*args)

    def submit(self, fn, *args):
        if self._pool is None:
            self._timed(fn, args)
            return
        while len(self._pending) >= MAX_PENDING_WRITES:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._timed, fn, args))

    def flush(self):
        while self._pending:
            self._pending.pop(0).result()

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _yield_to_the_cnn():
    """Lower the priority of a decoding thread (Linux: per-thread nice value).

    The CNN's thread pool runs one shard of each op per core and waits for
    the slowest: a decoding thread that takes a core mid-op stalls the whole
    op. With a lower priority, decoding runs in the gaps between CNN ops
    and in the batches' slack instead. Set SKBOTTLENECK_DECODE_NICE=0 to
    turn it off.
    """
    nice = int(os.environ.get("SKBOTTLENECK_DECODE_NICE", "19"))
    if nice and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:  # pragma: no cover - not permitted: keep the default
            pass
