"""
ResNet50 features larger than memory, trained from a feature store
==================================================================

The workflow for a dataset whose features do not fit in RAM: extract
**un-pooled** ResNet50 feature maps once into an on-disk
:class:`~skbottleneck.FeatureStore`, then train a linear classifier on it
chunk by chunk with :class:`~skbottleneck.IncrementalClassifier`, and evaluate
on a second store, never holding more than a chunk of features in memory.

At 224 px an un-pooled ResNet50 map is 7 x 7 x 2048 = 100,352 floats
(392 KiB) per image: 20 GB for 50,000 images. Here the images are 64 px
(a 2 x 2 x 2048 map, 16 KiB per image in float16) and there are a few hundred of them,
so that the example runs in seconds; the code is the same.
"""

# %%
# A training and a test folder
# ----------------------------
# Two class-per-subfolder folders of real photo patches (six classes), as
# ``train/`` and ``validation/`` folders of a real dataset would be.
import os
import tempfile
import time

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline

from skbottleneck import CNNFeatureTransformer, IncrementalClassifier
from skbottleneck.datasets import PHOTO_NAMES, load_image_folder, make_photo_folder
from skbottleneck.report import report

WEIGHTS = None  # "imagenet" on a machine that can download them (95 MB, once)
INPUT_SIZE = 64  # 224 on real photos
CLASSES = list(PHOTO_NAMES[:6])

work = tempfile.mkdtemp(prefix="skb-example-2-")
train_dir = make_photo_folder(os.path.join(work, "train"), classes=CLASSES, n_per_class=60,
                              size=96, random_state=0)
test_dir = make_photo_folder(os.path.join(work, "validation"), classes=CLASSES, n_per_class=20,
                             size=96, random_state=1)
train_paths, train_labels = load_image_folder(train_dir)
test_paths, test_labels = load_image_folder(test_dir)
print(f"{len(train_paths)} training and {len(test_paths)} test images, {len(CLASSES)} classes")

# %%
# Extract once into stores
# ------------------------
# ``pooling=None`` keeps the whole feature map; ``dtype="float16"`` halves the
# disk space. ``extract`` writes batch by batch (memory stays flat), checks the
# free disk space first, and resumes if it is interrupted and run again.
cnn = CNNFeatureTransformer("resnet50", weights=WEIGHTS, random_state=0, input_size=INPUT_SIZE,
                            pooling=None, dtype="float16", batch_size=32)
t0 = time.perf_counter()
train_store = cnn.extract(train_paths, train_labels, store=os.path.join(work, "train.h5")).features
test_store = cnn.extract(test_paths, test_labels, store=os.path.join(work, "test.h5")).features
print(f"extracted in {time.perf_counter() - t0:.1f} s: {train_store}")

per_image = train_store.n_features * 2  # bytes, float16
print(f"{train_store.n_features} features per image = {per_image / 1024:.0f} KiB; "
      f"train store {os.path.getsize(train_store.path) / 2**20:.1f} MiB on disk")
print(f"at 224 px: 7 x 7 x 2048 = {7 * 7 * 2048} features, "
      f"{7 * 7 * 2048 * 2 * 50_000 / 1e9:.0f} GB in float16 for 50,000 images")

# %%
# Train chunk by chunk
# --------------------
# Each epoch reads the store in shuffled chunks of ``chunk_size`` rows: the
# memory used by the data is one chunk (here 64 x 16 KiB = 1 MiB; with 224 px
# maps, 64 x 196 KiB = 12.5 MiB), whatever the number of images. The
# pipeline is fitted on the store and predicts from image files.
head = IncrementalClassifier(SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
                             epochs=15, chunk_size=64, random_state=0)
model = make_pipeline(cnn, head)
t0 = time.perf_counter()
model.fit(train_store)
print(f"trained {head.n_iter_} epochs in {time.perf_counter() - t0:.1f} s; chunk of "
      f"{64 * per_image / 2**20:.1f} MiB")

# %%
# Evaluate on the test store
# --------------------------
# :func:`skbottleneck.report.report` predicts the store in chunks too and
# writes a classification report, metrics JSON and confusion matrix.
metrics = report(model, test_store, None, os.path.join(work, "report"),
                 title="ResNet50 (un-pooled), SGD from a store")
print(f"test accuracy: {metrics['accuracy']:.3f}")
print(open(metrics["files"]["classification_report"]).read())

# %%
# The model predicts from image files
print(model.predict(test_paths[:4]), test_labels[:4])

# %%
# The confusion matrix written to the report folder
import matplotlib.pyplot as plt  # noqa: E402

image = plt.imread(metrics["files"]["confusion_matrix"])
fig, ax = plt.subplots(figsize=(10, 5))
ax.imshow(image)
ax.axis("off")
plt.show()

# %%
# On a real dataset
# -----------------
# - ``weights="imagenet"`` and ``input_size=224`` (the default): the
#   features become meaningful and the accuracy jumps; the store of 50,000
#   images is then 20 GB in float32 (10 GB in float16) — plus as much again in
#   the feature cache unless ``cache_dir=None``.
# - Keep ``chunk_size`` so that a chunk is 100-500 MB: 256 to 1,024 rows of
#   un-pooled ResNet50 features.
# - More epochs (20-50) and ``early_stopping=True`` to stop when held-out
#   accuracy stops improving.
# - From a shell, the same is
#   ``skbottleneck extract train/ --backbone resnet50 --pooling none --dtype float16 --out train.h5``
#   then ``skbottleneck train train.h5 --head logreg --chunk-size 256 --out model.joblib``.
print(f"files under {work}")
assert np.isfinite(metrics["accuracy"])
