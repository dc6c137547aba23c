"""Peak memory of extracting N images into a FeatureStore, N = 1,000 ... 70,000.

Each extraction runs in a fresh subprocess (MobileNetV2, seeded random
weights, cache off) and reports its peak RSS; the images are the 70,000
Fashion-MNIST images of Debian's ``dataset-fashion-mnist`` package written as
PNG files (generated images if that package is not installed). Once with
pooled features (1,280 per image) and once un-pooled (the full 2x2x1280 map
at 64 px: 5,120 per image).

Target: RSS(70k) / RSS(1k) <= 1.15 and under 3 GB.

    python benchmarks/bench_memory.py [--sizes 1000 5000 20000 70000]
"""

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, markdown_table, peak_rss_mib, write_result  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
CONFIGS = {"pooled": dict(pooling="avg", input_size=32), "un-pooled": dict(pooling=None, input_size=64)}


def image_files(n_max):
    """Up to ``n_max`` PNG files (Fashion-MNIST when installed) and their labels."""
    folder = WORK / "fashion_png"
    index = folder / "index.json"
    source_file = folder / "SOURCE"
    real = (FASHION / "train-images-idx3-ubyte.gz").exists()
    made_from = source_file.read_text() if source_file.exists() else None
    if index.exists() and made_from != ("fashion-mnist" if real else "generated"):
        # made before the data set was installed (or after it was removed): make them again
        for path in folder.glob("*.png"):
            path.unlink()
        index.unlink()
    if index.exists():
        entries = json.loads(index.read_text())
        if len(entries) >= n_max:
            return entries[:n_max]
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = labels = None
    source = "generated"
    try:
        parts = []
        for kind in ("train", "t10k"):
            with gzip.open(FASHION / f"{kind}-images-idx3-ubyte.gz") as f:
                imgs = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
            with gzip.open(FASHION / f"{kind}-labels-idx1-ubyte.gz") as f:
                labs = np.frombuffer(f.read(), np.uint8, offset=8)
            parts.append((imgs, labs))
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        source = "fashion-mnist"
    except OSError:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, n_max)
        images = (rng.random((n_max, 28, 28)) * 255).astype(np.uint8)
    entries = []
    for i in range(min(n_max, len(images))):
        path = folder / f"{i:05d}.png"
        if not path.exists():
            Image.fromarray(images[i]).save(path)
        entries.append([str(path), int(labels[i])])
    index.write_text(json.dumps(entries))
    source_file.write_text(source)
    return entries


def child(n, config, out):
    """Runs in a subprocess: extract n images, print peak RSS as JSON."""
    from skbottleneck import CNNFeatureTransformer

    entries = image_files(n)
    paths = [e[0] for e in entries]
    labels = [e[1] for e in entries]
    cnn = CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0, cache_dir=None,
                                batch_size=64, **CONFIGS[config])
    t = time.perf_counter()
    store = cnn.extract(paths, labels, store=out).features
    wall = time.perf_counter() - t
    peak = peak_rss_mib()
    print(json.dumps({"n": len(store), "n_features": store.n_features, "peak_mib": peak,
                      "seconds": wall, "store_mib": Path(out).stat().st_size / 2**20}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 5000, 20000, 70000])
    parser.add_argument("--child", nargs=3, metavar=("N", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2])
        return
    image_files(max(args.sizes))
    source = (WORK / "fashion_png" / "SOURCE").read_text()
    rows, verdicts = [], []
    for config in CONFIGS:
        peaks = {}
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix="skb-bench-mem-") as tmp:
                res = subprocess.run(
                    [sys.executable, __file__, "--child", str(n), config, f"{tmp}/features.h5"],
                    check=True, capture_output=True, text=True,
                )
                r = json.loads(res.stdout.strip().splitlines()[-1])
            peaks[n] = r["peak_mib"]
            rows.append([config, f"{n:,}", r["n_features"], f"{r['peak_mib']:,.0f}",
                         f"{r['peak_mib'] / peaks[args.sizes[0]]:.3f}", f"{r['store_mib']:,.0f}",
                         f"{n / r['seconds']:,.0f}"])
            print(rows[-1], flush=True)
        lo, hi = args.sizes[0], args.sizes[-1]
        ratio = peaks[hi] / peaks[lo]
        verdicts.append(f"- {config}: RSS({hi:,})/RSS({lo:,}) = **{ratio:.3f}** (target <= 1.15), "
                        f"peak {peaks[hi]:,.0f} MiB (target < 3,072)")
    body = (
        f"Peak RSS of `CNNFeatureTransformer.extract(paths, labels, store=...)` in a fresh process "
        f"(MobileNetV2, random weights, batch 64, cache off), images: {source} PNG files.\n\n"
        + markdown_table(["features", "images", "n_features", "peak RSS (MiB)", "ratio to first",
                          "store (MiB)", "img/s"], rows)
        + "\n\n" + "\n".join(verdicts)
    )
    write_result("bench_memory", "Memory of extraction into a store", body)


if __name__ == "__main__":
    main()
