"""Real servers on 127.0.0.1 for the tests of remote images: an S3 server
(moto's server mode) and an HTTP server (``http.server`` in a thread) with
paths that fail the way networks do.

HTTP paths served from ``root``:

- ``/<file>``: the file, with its Content-Length;
- ``/drop/<file>``: sends the headers and half the bytes, then closes the
  connection (every time: a truncated read that retries cannot mend);
- ``/flaky/<file>``: the first request of each file drops mid-read, the
  next ones succeed (a transient error that a retry mends);
- ``/forbidden/<file>``: 403.
"""

import contextlib
import http.server
import os
import socket
import threading


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server():
    """A moto S3 server; yields its endpoint URL. Dummy credentials are set."""
    from moto.server import ThreadedMotoServer

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _reset_moto(endpoint)  # moto keeps its buckets per process: start empty
    try:
        yield endpoint
    finally:
        _reset_moto(endpoint)
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reset_moto(endpoint):
    """Empty every bucket of moto's in-process state (its reset API)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"),
                           timeout=10).close()


def s3_filesystem(endpoint):
    """An s3fs filesystem on the moto server (a fresh instance, not fsspec's cached one)."""
    import s3fs

    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    root = None
    seen = None
    lock = threading.Lock()

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind not in ("drop", "flaky", "forbidden"):
            kind, name = "plain", self.path.lstrip("/")
        if kind == "forbidden":
            self.send_error(403)
            return
        path = os.path.join(self.root, name)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        drop = kind == "drop"
        if kind == "flaky":
            with self.lock:
                drop = name not in self.seen
                self.seen.add(name)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if drop:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)



@contextlib.contextmanager
def http_server(root):
    """Serves ``root`` on 127.0.0.1 in a thread; yields the base URL (no trailing slash)."""
    handler = type("Handler", (_Handler,), {"root": os.fspath(root), "seen": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
