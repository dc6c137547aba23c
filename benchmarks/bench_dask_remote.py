"""Dask without a shared file system: features returned to the client vs written by the workers.

The same images, from moto's S3 server (``moto_server`` in a process of its
own on 127.0.0.1), extracted with ``extract(..., client=client)`` on a warm
``LocalCluster`` of one worker process (one thread), with an empty cache each
run, alternately with ``shared_cache=True`` (the workers write the cache
folder; this machine's disk is the "shared file system") and
``shared_cache=False`` (the workers return their features; the client writes
its cache as they arrive). Pooled features (1,280 floats per image) and
unpooled ones (``pooling=None``: 4x4x1280 = 20,480 at 128 px) show what the
bytes travelling to the client cost. Best of ``--rounds`` runs each.

    python benchmarks/bench_dask_remote.py [--images 128] [--rounds 2]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_result  # noqa: E402
from bench_dask import WORKER_ENV, photo_jpegs, wait_for_idle, warm_worker, weights_file  # noqa: E402
from bench_remote import _free_port, _wait  # noqa: E402

SIZE = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
             "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(creds)
    import numpy as np
    import s3fs
    from distributed import Client, LocalCluster

    from skbottleneck import CNNFeatureTransformer

    files = photo_jpegs(args.images)
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                               "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp(prefix="skb-bench-dask-remote-"))
    rows = []
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait(endpoint)
        options = {"client_kwargs": {"endpoint_url": endpoint}}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("bench")
        urls = []
        for p in files:
            fs.put(p, f"bench/photos/{os.path.basename(p)}")
            urls.append(f"s3://bench/photos/{os.path.basename(p)}")
        base = {"backbone": "mobilenet_v2", "weights": weights_file(SIZE), "input_size": SIZE,
                "batch_size": 32, "storage_options": options}
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=None, env={**WORKER_ENV, **creds}) as cluster, \
                Client(cluster) as client:
            client.run(warm_worker, dict(base, cache_dir=tmp / "warm"))
            for pooling in ("avg", None):
                params = dict(base, pooling=pooling)
                CNNFeatureTransformer(**params, cache_dir=tmp / "warm").fit().extract(
                    urls[:4], client=client)  # the worker builds this model
                walls, stats, X = {True: [], False: []}, {}, {}
                for rnd in range(args.rounds):
                    for shared in (True, False):
                        wait_for_idle(max_wait=10)
                        est = CNNFeatureTransformer(
                            **params, cache_dir=tmp / f"c-{pooling}-{shared}-{rnd}").fit()
                        t = time.perf_counter()
                        result = est.extract(urls, client=client, shared_cache=shared)
                        walls[shared].append(time.perf_counter() - t)
                        stats[shared], X[shared] = result.stats["cluster"], result.features
                assert np.array_equal(X[True], X[False]), "returned features differ"
                for shared in (True, False):
                    st, best = stats[shared], min(walls[shared])
                    rows.append([
                        "avg (1,280)" if pooling else f"none ({X[shared].shape[1]:,})",
                        "workers write (shared)" if shared else "returned to the client",
                        f"{best:.2f}", ", ".join(f"{w:.2f}" for w in walls[shared]),
                        f"{args.images / best:.1f}", f"{st['bytes_returned'] / 1e6:.1f}",
                        f"{st['client_write_s']:.2f}", f"{os.getloadavg()[0]:.1f}"])
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    body = (
        f"{args.images} JPEG files (500x375) in moto's S3 server, mobilenet_v2 at {SIZE} px, "
        "batch_size=32, one warm worker process (1 thread) on this machine; empty cache "
        f"each run, best of {args.rounds}. The features are identical either way.\n\n"
        + markdown_table(["pooling (features)", "features", "best wall s", "all runs s",
                          "images/s", "MB returned", "client write s", "load average"], rows)
        + "\n\nWith a real network, 'returned' adds bytes / bandwidth of the client's link "
        "(here loopback); the client's cache write is the same work a worker does on a "
        "shared file system.\n"
    )
    write_result("bench_dask_remote", "Dask without a shared file system: returned vs shared",
                 body, libs=("tensorflow", "keras", "numpy", "dask", "distributed", "s3fs"))


if __name__ == "__main__":
    main()
