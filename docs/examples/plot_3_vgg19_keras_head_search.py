"""
Searching small Keras dense heads on VGG19 features
===================================================

Which head on top of frozen VGG19 features at 150 x 150 px: how many units,
how much dropout, one hidden layer or two? Extract the features once, then
let ``GridSearchCV`` cross-validate every combination of
:class:`~skbottleneck.KerasMLPClassifier` parameters on them.

Extracting once and searching on the array is the fastest way (no image is
even opened again); searching over a whole pipeline on image paths works too
and runs the CNN once per image thanks to the feature cache
(:doc:`/user_guide/model_selection`).
"""

# %%
# VGG19 features at 150 x 150
# ---------------------------
# ``pooling=None`` flattens VGG19's last map: at 150 px it is 4 x 4 x 512 =
# 8,192 features per image (7 x 7 x 512 = 25,088 at 224 px).
import os
import tempfile
import time

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbottleneck import CNNFeatureTransformer, KerasMLPClassifier
from skbottleneck.datasets import load_image_folder, make_photo_folder

WEIGHTS = None  # "imagenet" where the weights can be downloaded (80 MB, once)

work = tempfile.mkdtemp(prefix="skb-example-3-")
paths, labels = load_image_folder(make_photo_folder(os.path.join(work, "data"),
                                                    n_per_class=25, size=160, random_state=0))
cnn = CNNFeatureTransformer("vgg19", weights=WEIGHTS, random_state=0, input_size=150, pooling=None)
t0 = time.perf_counter()
X = cnn.fit_transform(paths)
print(f"{X.shape[0]} images x {X.shape[1]} features in {time.perf_counter() - t0:.1f} s")

# %%
# The search
# ----------
# Three architectures (one layer of 64 or 256 units, or 256 then 64) times
# two dropout rates, 3-fold cross-validated: 18 small Keras models.
head = KerasMLPClassifier(epochs=20, batch_size=16, random_state=0, verbose=0)
pipe = make_pipeline(StandardScaler(), head)
grid = {
    "kerasmlpclassifier__hidden_layer_sizes": [(64,), (256,), (256, 64)],
    "kerasmlpclassifier__dropout": [0.0, 0.5],
}
search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0))
t0 = time.perf_counter()
search.fit(X, labels)
print(f"searched in {time.perf_counter() - t0:.1f} s; best: {search.best_params_}, "
      f"accuracy {search.best_score_:.3f}")

# %%
# Results
# -------
results = pd.DataFrame(search.cv_results_)
results["layers"] = results["param_kerasmlpclassifier__hidden_layer_sizes"].astype(str)
results["dropout"] = results["param_kerasmlpclassifier__dropout"]
table = results.pivot(index="layers", columns="dropout", values="mean_test_score")
print(table.round(3))

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
table.plot.bar(ax=ax, rot=0)
ax.set_xlabel("hidden layers")
ax.set_ylabel("mean CV accuracy")
ax.set_ylim(0, 1.05)
ax.legend(title="dropout")
plt.show()

# %%
# The chosen head, on images
# --------------------------
# The best head, refitted on all features, goes after the same transformer in
# one pipeline that predicts from image files.
model = make_pipeline(cnn, search.best_estimator_)
print(model.predict(paths[:3]), labels[:3])

# %%
# On a real dataset
# -----------------
# - ``weights="imagenet"`` (the point of it all) and the images of your
#   classes; with more images, 5-fold CV and 30-50 epochs.
# - Larger heads need more data: with a few hundred images per class, a
#   single layer of 128-256 units with dropout 0.5 is the usual winner.
# - Add ``learning_rate`` or ``batch_size`` to the grid only once the
#   architecture is settled: the grid grows multiplicatively.
# - Features larger than memory: extract into a store and compare heads with
#   ``skbottleneck train features.h5 --head keras-mlp -p hidden_layer_sizes=(256,)
#   -p dropout=0.5``, which prints the accuracy on held-out rows.
assert 0.0 <= search.best_score_ <= 1.0
