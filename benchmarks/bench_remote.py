"""Images/s from a local S3 server and from HTTP against the same files on disk (issue #22).

The same JPEGs are read three ways, side by side in one run, rounds
interleaved: from the local disk, from moto's S3 server (``moto_server``
in a process of its own on 127.0.0.1) and from Python's ``http.server``
(threaded, HTTP/1.1 keep-alive, its own process). Two measurements:

- *read only*: the bytes of every image through
  :func:`skbottleneck.remote.read_image_bytes`, in 1 thread and in 16
  (what the extraction's I/O pool uses): the cost of the network path and
  what concurrent reads win back;
- *transform*: ``CNNFeatureTransformer.transform`` end to end (read, hash,
  decode, CNN; no cache), MobileNetV2 at 96 px on TensorFlow: how much of
  the network's cost is left once reads overlap decoding and the CNN.

Both servers run on this machine and share its cores with the client, so
the figures are a ceiling on the overhead of the client side, not a
measure of a real object store's latency.

Run: ``python benchmarks/bench_remote.py [--images 256] [--rounds 3]``.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, markdown_table, write_result  # noqa: E402


# http.server's default listen backlog (5) drops connections under 16
# concurrent clients, which then wait 1 s to retry: a larger one here.
_HTTP_SERVER = """
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
handler = functools.partial(Handler, directory=sys.argv[2])
Server(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url, timeout=60):
    import urllib.request

    t = time.time()
    while time.time() - t < timeout:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception as e:  # not up yet (404 from moto's root is fine)
            if getattr(e, "code", None):
                return
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.datasets import load_image_folder, make_photo_folder
    from skbottleneck.remote import read_image_bytes

    folder = WORK / f"remote_{args.images}"
    if not folder.exists():
        make_photo_folder(folder, n_per_class=args.images // 4, size=(375, 500),
                          classes=["astronaut", "chelsea", "coffee", "rocket"], random_state=0)
    files, _ = load_image_folder(folder)
    rel = [os.path.relpath(p, folder) for p in files]
    size_kb = sum(os.path.getsize(p) for p in files) / len(files) / 1024

    s3_port, http_port = _free_port(), _free_port()
    bin_dir = Path(sys.executable).parent
    servers = [
        subprocess.Popen([str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", _HTTP_SERVER, str(http_port), str(folder)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        endpoint = f"http://127.0.0.1:{s3_port}"
        _wait(endpoint)
        _wait(f"http://127.0.0.1:{http_port}/")
        import s3fs

        options = {"s3": {"client_kwargs": {"endpoint_url": endpoint}}}  # http: none
        fs = s3fs.S3FileSystem(**options["s3"])
        fs.mkdir("bench")
        fs.put(str(folder), "bench/photos", recursive=True)
        sources = {
            "local disk": list(files),
            "S3 (moto server)": [f"s3://bench/photos/{r}" for r in rel],
            "HTTP (http.server)": [f"http://127.0.0.1:{http_port}/{r}" for r in rel],
        }

        def read_all(paths, threads):
            if threads == 1:
                return [read_image_bytes(p, options) for p in paths]
            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(lambda p: read_image_bytes(p, options), paths))

        cnn = CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0,
                                    input_size=96, runtime="tensorflow", cache_dir=None,
                                    storage_options=options).fit()
        for paths in sources.values():  # warm-up: model traced, connections opened
            read_all(paths[:32], 16)
            cnn.transform(paths[:32])
        read_s = {}
        times = {(name, kind): [] for name in sources for kind in ("read 1", "read 16", "cnn")}
        for _ in range(args.rounds):
            for name, paths in sources.items():
                for kind, fn in (("read 1", lambda: read_all(paths, 1)),
                                 ("read 16", lambda: read_all(paths, 16)),
                                 ("cnn", lambda: read_s.setdefault(name, []).append(
                                     cnn.extract(paths).stats["read_s"]))):
                    t = time.perf_counter()
                    fn()
                    times[name, kind].append(time.perf_counter() - t)
    finally:
        for s in servers:
            s.terminate()
            s.wait()

    n = len(files)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    local = "local disk"
    rows = [[name, f"{rate[name, 'read 1']:.0f}", f"{rate[name, 'read 16']:.0f}",
             f"{rate[name, 'cnn']:.1f}", f"{rate[name, 'cnn'] / rate[local, 'cnn']:.2f}",
             f"{statistics.median(read_s[name]) / n * 1000:.1f}"]
            for name in sources]
    body = (f"{n} JPEGs of 500x375 ({size_kb:.0f} KiB each), {args.rounds} rounds interleaved, "
            "median. Servers on 127.0.0.1, each in a process of its own, sharing the client's "
            "cores.\n\n"
            + markdown_table(["source", "read img/s, 1 thread", "read img/s, 16 threads",
                              "transform img/s (MobileNetV2 96 px, TF)", "x local",
                              "read ms/img in transform (I/O thread time)"], rows))
    write_result("bench_remote", "bench_remote: images from S3 and HTTP against local files",
                 body, libs=("tensorflow", "fsspec", "s3fs", "aiohttp", "moto", "pillow"))


if __name__ == "__main__":
    main()
