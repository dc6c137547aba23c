"""GridSearchCV over heads on an image folder: how often does each image go through the CNN?

A 5-fold ``GridSearchCV`` over 6 heads of a
``Pipeline([("features", CNNFeatureTransformer(...)), ("head", ...)])`` on a
folder of real photo patches, with the feature cache on (target: exactly
1 CNN pass per image) and off (every fold and candidate re-extracts).

    python benchmarks/bench_gridsearch.py
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, markdown_table, write_result  # noqa: E402

from sklearn.linear_model import LogisticRegression, SGDClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skbottleneck import CNNFeatureTransformer, KerasMLPClassifier  # noqa: E402
from skbottleneck.datasets import load_image_folder, make_photo_folder  # noqa: E402
from skbottleneck.extraction import cnn_image_count  # noqa: E402

HEADS = [
    LogisticRegression(C=0.1, max_iter=2000),
    LogisticRegression(C=1.0, max_iter=2000),
    SGDClassifier(alpha=1e-4, random_state=0),
    SGDClassifier(alpha=1e-2, random_state=0),
    KerasMLPClassifier(hidden_layer_sizes=(64,), dropout=0.5, epochs=20, random_state=0),
    KerasMLPClassifier(hidden_layer_sizes=(64, 16), dropout=0.0, epochs=20, random_state=0),
]


def search(paths, labels, cache_dir, input_size):
    pipe = Pipeline([
        ("features", CNNFeatureTransformer("efficientnet_lite0", weights="imagenet",
                                           input_size=input_size, cache_dir=cache_dir)),
        ("scale", StandardScaler()),
        ("head", HEADS[0]),
    ])
    grid = GridSearchCV(pipe, {"head": HEADS}, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    before = cnn_image_count()
    t = time.perf_counter()
    grid.fit(paths, labels)
    return grid, (cnn_image_count() - before) / len(paths), time.perf_counter() - t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=40)
    parser.add_argument("--input-size", type=int, default=160)
    args = parser.parse_args(argv)
    folder = make_photo_folder(WORK / f"grid_photos_{args.n_per_class}", n_per_class=args.n_per_class,
                               size=(128, 128), random_state=0, exist_ok=True)
    paths, labels = load_image_folder(folder)
    cache_dir = tempfile.mkdtemp(prefix="skb-bench-grid-")
    try:
        cached, passes_cached, t_cached = search(paths, labels, cache_dir, args.input_size)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    uncached, passes_uncached, t_uncached = search(paths, labels, None, args.input_size)
    rows = [
        ["cache on", f"{passes_cached:.2f}", f"{t_cached:.1f}", f"{cached.best_score_:.3f}"],
        ["cache off", f"{passes_uncached:.2f}", f"{t_uncached:.1f}", f"{uncached.best_score_:.3f}"],
    ]
    body = (
        f"5-fold GridSearchCV over {len(HEADS)} heads (LogisticRegression x2, SGDClassifier x2, "
        f"KerasMLPClassifier x2) on {len(paths)} real photo patches in {len(set(labels))} classes; "
        f"features: efficientnet_lite0 ImageNet at {args.input_size} px, then StandardScaler.\n\n"
        + markdown_table(["search", "CNN passes per image", "wall (s)", "best CV accuracy"], rows)
        + f"\n\nSpeed-up of the cache: **{t_uncached / t_cached:.1f}x**; best head: "
        f"{cached.best_params_['head']!r}."
    )
    write_result("bench_gridsearch", "GridSearchCV over heads: CNN passes per image", body)


if __name__ == "__main__":
    main()
