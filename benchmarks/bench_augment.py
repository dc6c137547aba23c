"""Augmented views: what they buy in accuracy, and what they cost in extraction.

Real ImageNet features (EfficientNet-Lite0, weights shipped with the
package) of two real tasks, the same head (StandardScaler +
LogisticRegression(C=0.1)) throughout:

- ``photos``: scikit-image photo patches, one class per photo, few training
  images (12 per class, from the left 60% of each photo) and test patches
  from the right 40% (no pixel shared);
- ``fashion``: Fashion-MNIST (Debian's ``dataset-fashion-mnist``), 2,000
  training and 2,000 test images.

For each task: (a) no views; (b) the head trained on ``n_views`` views of
every training image (labels repeated), predicting from the image itself;
(c) (b) plus test-time augmentation (probabilities averaged over the views
of each test image). Extraction cost: seconds of a cold-cache extraction
of the training images with views against without, and of a second
extraction with views (all from the cache).

    python benchmarks/bench_augment.py [--quick] [--views 8]
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, markdown_table, write_result  # noqa: E402

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skbottleneck import CNNFeatureTransformer, ImageViews  # noqa: E402


def head():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))


def fashion_task(n_train, n_test):
    from bench_memory import FASHION, WORK as MEMORY_WORK, image_files

    entries = image_files(n_train + n_test)
    if (MEMORY_WORK / "fashion_png" / "SOURCE").read_text() != "fashion-mnist":
        raise SystemExit(f"Fashion-MNIST is not installed at {FASHION} (apt install "
                         "dataset-fashion-mnist): the fashion task needs the real images")
    paths = [e[0] for e in entries]
    labels = np.array([e[1] for e in entries])
    return (paths[:n_train], labels[:n_train], paths[n_train:], labels[n_train:], 64)


def photo_task(n_train, n_test, size=96):
    """Patches of the scikit-image photos, one class per photo: training patches
    from the left 60% of each photo, test patches from the right 40% (no pixel shared)."""
    from PIL import Image

    from skbottleneck.datasets import PHOTO_NAMES, _load_photo

    rng = np.random.default_rng(0)
    root = WORK / "augment_photos"
    out = {"train": ([], []), "test": ([], [])}
    for name in PHOTO_NAMES:
        photo = _load_photo(name)
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        h, w = photo.shape[:2]
        split = int(0.6 * w)
        for part, (x_lo, x_hi), n in [("train", (0, split), n_train), ("test", (split, w), n_test)]:
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                side = int(rng.uniform(0.25, 0.45) * min(h, x_hi - x_lo))
                x = int(rng.integers(x_lo, x_hi - side + 1))
                y = int(rng.integers(0, h - side + 1))
                path = folder / f"{i:03d}.jpg"
                Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size)).save(
                    path, quality=90)
                out[part][0].append(str(path))
                out[part][1].append(name)
    return (out["train"][0], np.asarray(out["train"][1]), out["test"][0],
            np.asarray(out["test"][1]), size)


def run_task(name, task, views):
    X_train, y_train, X_test, y_test, size = task
    cache = WORK / f"augment_cache_{name}"
    shutil.rmtree(cache, ignore_errors=True)
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=size, cache_dir=cache).fit()
    cnn.transform(X_test[:1])  # builds the CNN (kept per process): not part of either timing
    t = time.perf_counter()
    plain_train = cnn.transform(X_train)
    plain_s = time.perf_counter() - t
    shutil.rmtree(cache, ignore_errors=True)  # cold again: the views' cost from nothing
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=size, cache_dir=cache).fit()
    t = time.perf_counter()
    train = cnn.extract(X_train, y_train, augment=views)
    views_s = time.perf_counter() - t
    t = time.perf_counter()
    cnn.extract(X_train, y_train, augment=views)
    cached_s = time.perf_counter() - t
    plain_test = cnn.transform(X_test)
    test = cnn.extract(X_test, augment=views)

    acc = {}
    acc["no views"] = head().fit(plain_train, y_train).score(plain_test, y_test)
    model = head().fit(train.features, train.y)
    acc["views (train)"] = model.score(plain_test, y_test)
    proba = model.predict_proba(test.features).reshape(len(X_test), views.n_views, -1).mean(1)
    acc["views + TTA"] = float(np.mean(model.classes_[proba.argmax(1)] == y_test))
    return {"task": name, "n_train": len(X_train), "n_test": len(X_test), "size": size,
            **acc, "plain_s": plain_s, "views_s": views_s, "cached_s": cached_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--tasks", default="photos,fashion")
    args = parser.parse_args()
    views = ImageViews(n_views=args.views, random_state=0)
    scale = 4 if args.quick else 1
    tasks = {"photos": lambda: photo_task(12 // scale, 40 // scale),
             "fashion": lambda: fashion_task(2000 // scale, 2000 // scale)}
    rows = []
    for name in args.tasks.split(","):
        r = run_task(name, tasks[name](), views)
        print(r, flush=True)
        rows.append([
            r["task"], f"{r['n_train']} / {r['n_test']}", r["size"],
            f"{r['no views']:.3f}", f"{r['views (train)']:.3f}", f"{r['views + TTA']:.3f}",
            f"{r['views_s'] / r['plain_s']:.1f}x", f"{r['cached_s']:.2f} s",
        ])
    body = (
        f"{views.n_views} views per image (view 0 the image itself; `ImageViews(n_views="
        f"{views.n_views}, random_state=0)`: flips, crops at 1.0/0.85/0.7 of each side, "
        "colour jitter 0.1). Head: StandardScaler + LogisticRegression(C=0.1). EfficientNet-Lite0 "
        "ImageNet features.\n\n"
        + markdown_table(
            ["task", "train / test images", "input px", "no views", "views (train)",
             "views + TTA", "extraction cost, views / plain (cold)", "2nd extraction with views"],
            rows)
    )
    write_result("bench_augment", "Augmented views: accuracy and extraction cost", body)


if __name__ == "__main__":
    main()
