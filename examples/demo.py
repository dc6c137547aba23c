"""The main job end to end: real photos -> CNN features -> a trained classifier.

1. Builds a labelled image folder of real photo patches (cut from the photos
   that ship with scikit-image, one class per photo) under ``demo_data/``.
2. Extracts EfficientNet-Lite0 ImageNet features (weights shipped with the
   package, no download) with :class:`skbottleneck.CNNFeatureTransformer`,
   cached on disk under ``demo_data/cache``.
3. Trains an ``SGDClassifier`` on the training split and prints accuracy, a
   classification report and the confusion matrix on the held-out split.

Run it with ``make demo``; a second run reuses the cached features.
"""

import sys
import time
from pathlib import Path

from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbottleneck import CNNFeatureTransformer
from skbottleneck.datasets import PHOTO_NAMES, load_image_folder, make_photo_folder


def main(root="demo_data"):
    root = Path(root)
    t0 = time.perf_counter()
    folder = make_photo_folder(root / "photos", classes=list(PHOTO_NAMES), n_per_class=40,
                               size=(160, 160), random_state=0, exist_ok=True)
    paths, labels = load_image_folder(folder)
    print(f"{len(paths)} images in {len(set(labels))} classes under {folder}")

    X_train, X_test, y_train, y_test = train_test_split(
        paths, labels, test_size=0.3, stratify=labels, random_state=0
    )
    model = make_pipeline(
        CNNFeatureTransformer(
            "efficientnet_lite0", weights="imagenet", input_size=160,
            cache_dir=root / "cache", verbose=1,
        ),
        StandardScaler(),
        SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
    )
    model.fit(X_train, y_train)
    predicted = model.predict(X_test)

    print(f"\naccuracy on {len(X_test)} held-out images: {accuracy_score(y_test, predicted):.3f}\n")
    print(classification_report(y_test, predicted, digits=3))
    classes = sorted(set(labels))
    print("confusion matrix (rows: true, columns: predicted):", ", ".join(classes))
    print(confusion_matrix(y_test, predicted, labels=classes))
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return accuracy_score(y_test, predicted)


if __name__ == "__main__":
    main(*sys.argv[1:])
