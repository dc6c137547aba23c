"""The main job end to end: real photos -> CNN features -> a classifier, scored on unseen regions.

1. Cuts patches out of the seven colour photographs that ship with
   scikit-image (one class per photo) into ``demo_data/photos/``: the
   training patches from the left 60% of each photo, the test patches from
   the right 40%, so that no test patch shares a pixel with a training patch
   (:func:`skbottleneck.datasets.make_photo_regions_split`). The score says
   how well a model recognises a photo from a part of it it has never seen.
2. Trains the same head (StandardScaler + LogisticRegression(C=0.1)) twice
   and scores both on the held-out patches:

   - on the raw pixels (96 x 96 x 3 values): the baseline, what a linear
     model gets without a CNN;
   - on EfficientNet-Lite0 ImageNet features
     (:class:`skbottleneck.CNNFeatureTransformer`; the weights ship with the
     package, no download), cached on disk under ``demo_data/cache``.
3. Prints both accuracies side by side, the classification report, and
   writes a report folder (confusion-matrix PNG, metrics, predictions)
   under ``demo_data/report``.

Augmented views (:class:`skbottleneck.AugmentedClassifier`) are left out:
tried on this task, 8 views per training image left the accuracy where it
was and test-time augmentation lowered it, for 5 times the extraction
(``benchmarks/bench_augment.py`` measures views on its own photo task).
``benchmarks/bench_head_defaults.py`` compares heads on this task.

Run it with ``make demo`` (or ``python examples/demo.py [--root DIR]``); a
second run reuses the cached features. ``--quick`` scores 12 test patches
per photo instead of 40 (the test suite's run).
"""

import argparse
import re
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbottleneck import CNNFeatureTransformer
from skbottleneck._keras import import_tf
from skbottleneck.datasets import PHOTO_NAMES, load_image_folder, make_photo_regions_split
from skbottleneck.images import load_image
from skbottleneck.report import report

#: Input size of the CNN, and of the patches written (pixels).
SIZE = 96


HEAD_NAME = "StandardScaler + LogisticRegression(C=0.1)"


def head():
    """The head trained on pixels and on features alike."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))


def pixels(paths):
    return np.stack([load_image(p).reshape(-1) for p in paths]).astype(np.float32) / 255


def main(root="demo_data", quick=False):
    t0 = time.perf_counter()
    import_tf(quiet=True)  # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) kept quiet
    root = Path(root)
    split = make_photo_regions_split(root / "photos", classes=list(PHOTO_NAMES), n_train=12,
                                     n_test=12 if quick else 40, size=SIZE, random_state=0,
                                     exist_ok=True)
    X_train, y_train = load_image_folder(split.train)
    X_test, y_test = load_image_folder(split.test)
    print(f"task: recognise {len(PHOTO_NAMES)} photos ({', '.join(PHOTO_NAMES)}) from "
          f"{SIZE} px patches\n  {len(X_train)} training patches from the left 60% of each photo "
          f"({split.train})\n  {len(X_test)} test patches from the right 40%, no pixel shared "
          f"with a training patch ({split.test})")

    scores = {}
    t = time.perf_counter()
    scores["raw pixels"] = head().fit(pixels(X_train), y_train).score(pixels(X_test), y_test)
    print(f"raw pixels: trained and scored in {time.perf_counter() - t:.1f} s", flush=True)

    cnn = CNNFeatureTransformer("efficientnet_lite0", weights="imagenet", input_size=SIZE,
                                cache_dir=root / "cache")
    t = time.perf_counter()
    model = make_pipeline(cnn, *(step for _, step in head().steps))  # the same head
    model.fit(X_train, y_train)
    predicted = model.predict(X_test)
    scores["EfficientNet-Lite0 features"] = float(np.mean(predicted == y_test))
    print(f"EfficientNet-Lite0 features: extracted, trained and scored in "
          f"{time.perf_counter() - t:.1f} s (the features are cached: a second run skips the CNN)",
          flush=True)

    print(f"\naccuracy on {len(X_test)} held-out patches, same head ({HEAD_NAME}):")
    width = max(map(len, scores))
    for name, score in scores.items():
        print(f"  {name:<{width}}  {score:.3f}")
    print("\nclassification report (EfficientNet-Lite0 features):")
    print(classification_report(y_test, predicted, digits=3))
    metrics = report(model, X_test, y_test, root / "report",
                     title=f"EfficientNet-Lite0 features, {len(X_test)} held-out patches")
    print(f"confusion matrix: {metrics['files'].get('confusion_matrix', '(needs matplotlib)')}")
    print(f"report folder: {root / 'report'}")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return scores


def parse_scores(text):
    """The accuracies a run printed, ``{name: accuracy}`` (for the tests)."""
    block = text.split("held-out patches, same head", 1)[1].split("\n\n", 1)[0]
    return {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^  (\S.*?)\s+(\d\.\d{3})$", block, re.MULTILINE)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_data", help="folder for images, cache and report")
    parser.add_argument("--quick", action="store_true",
                        help="12 test patches per photo instead of 40 (the test suite's run)")
    args = parser.parse_args()
    main(args.root, quick=args.quick)
