"""Which head, at what cost? Accuracy, fit time and peak memory of classifier heads.

Two feature sets:

- ``photos``: real ImageNet features — the offline ``efficientnet_lite0``
  backbone (ImageNet weights shipped with the package) on patches of
  scikit-image's bundled photos, one class per photo;
- ``large``: a generated store of 16,000 x 2,048 float32 features in 5 classes
  (the size of PERF_NOTES' head figures), written as a FeatureStore.

Heads: LogisticRegression and SGDClassifier in memory,
``IncrementalClassifier(SGDClassifier)`` and ``IncrementalClassifier(MLPClassifier)``
out of core from the store, ``KerasMLPClassifier`` in memory and out of core.
Each head is fitted in a fresh subprocess, so its peak RSS is its own.

Also: epoch time of out-of-core SGD from the store against the same
``partial_fit`` loop over an in-memory array (target <= 1.3x, accuracy
within 0.5 point).

    python benchmarks/bench_heads.py
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, WORK, markdown_table, write_result  # noqa: E402

HEADS = ["logreg (memory)", "sgd (memory)", "incremental sgd (store)", "incremental mlp (store)",
         "keras mlp (memory)", "keras mlp (store)"]
EPOCHS = 5


def photo_store():
    """Real ImageNet features of real photo patches, train and test stores."""
    from sklearn.model_selection import train_test_split

    from skbottleneck import CNNFeatureTransformer, FeatureStore
    from skbottleneck.datasets import PHOTO_NAMES, load_image_folder, make_photo_folder

    train, test = WORK / "heads_photos_train.h5", WORK / "heads_photos_test.h5"
    if not (train.exists() and test.exists()):
        folder = make_photo_folder(WORK / "heads_photos", classes=list(PHOTO_NAMES), n_per_class=80,
                                   size=(128, 128), random_state=1, exist_ok=True)
        paths, labels = load_image_folder(folder)
        p_tr, p_te, y_tr, y_te = train_test_split(paths, labels, test_size=0.3, stratify=labels,
                                                  random_state=0)
        cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=128, cache_dir=WORK / "cache")
        cnn.extract(p_tr, y_tr, store=train)
        cnn.extract(p_te, y_te, store=test)
    return FeatureStore(train), FeatureStore(test)


def large_store():
    """16,000 + 4,000 rows x 2,048 generated features in 5 overlapping classes."""
    from skbottleneck import FeatureStore
    from skbottleneck.store import StoreWriter

    train, test = WORK / "heads_large_train.h5", WORK / "heads_large_test.h5"
    if not (train.exists() and test.exists()):
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(5, 2048)).astype(np.float32) * 0.08
        for path, n in [(train, 16000), (test, 4000)]:
            y = rng.integers(0, 5, n)
            w = StoreWriter(path, paths=[f"row{i}" for i in range(n)], labels=y, n_features=2048,
                            overwrite=True)
            for start in range(0, n, 2000):
                rows = np.arange(start, min(n, start + 2000))
                X = np.abs(centers[y[rows]] + rng.normal(size=(len(rows), 2048)).astype(np.float32))
                w.write_rows(rows, X)
            w.finalize()
    return FeatureStore(train), FeatureStore(test)


def make_head(name, n_train):
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skbottleneck import IncrementalClassifier, KerasMLPClassifier

    sgd = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
    return {
        "logreg (memory)": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300)),
        "sgd (memory)": lambda: make_pipeline(StandardScaler(), SGDClassifier(
            loss="log_loss", alpha=1e-4, max_iter=EPOCHS, tol=None, random_state=0)),
        "incremental sgd (store)": lambda: IncrementalClassifier(sgd, epochs=EPOCHS, random_state=0),
        "incremental mlp (store)": lambda: IncrementalClassifier(
            MLPClassifier((256,), random_state=0), epochs=EPOCHS, random_state=0),
        "keras mlp (memory)": lambda: KerasMLPClassifier((256,), dropout=0.5, epochs=EPOCHS * 2,
                                                         random_state=0),
        "keras mlp (store)": lambda: KerasMLPClassifier((256,), dropout=0.5, epochs=EPOCHS * 2,
                                                        random_state=0),
    }[name]()


def child(head, dataset):
    """Runs in a subprocess: fit one head on one dataset, print JSON."""
    train, test = photo_store() if dataset == "photos" else large_store()
    X_test, y_test = test.to_numpy(), test.labels
    in_memory = head.endswith("(memory)")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = make_head(head, len(train))
    t = time.perf_counter()
    if in_memory:
        model.fit(train.to_numpy(), train.labels)
    else:
        model.fit(train)
    fit_s = time.perf_counter() - t
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"accuracy": accuracy, "fit_s": fit_s, "peak_mib": peak, "base_mib": base_rss}))


def sgd_epoch_ratio(dataset):
    """Out-of-core SGD from the store vs the same partial_fit loop on an in-memory array."""
    from sklearn.base import clone
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    from skbottleneck import IncrementalClassifier

    train, test = photo_store() if dataset == "photos" else large_store()
    X, y = train.to_numpy(), train.labels
    X_test, y_test = test.to_numpy(), test.labels
    classes = np.unique(y)
    sgd = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)

    def memory_loop():
        rng = np.random.default_rng(0)
        scaler = StandardScaler()
        for start in range(0, len(X), 1024):
            scaler.partial_fit(X[start:start + 1024])
        est = clone(sgd)
        t = time.perf_counter()
        for _ in range(EPOCHS):
            order = rng.permutation(len(X))
            for start in range(0, len(X), 1024):
                idx = order[start:start + 1024]
                est.partial_fit(scaler.transform(X[idx]), y[idx], classes=classes)
        return (time.perf_counter() - t) / EPOCHS, np.mean(est.predict(scaler.transform(X_test)) == y_test)

    def store_loop():
        model = IncrementalClassifier(sgd, epochs=EPOCHS, random_state=0)
        t = time.perf_counter()
        model.fit(train)
        # the scaler's first pass is one extra read of the store
        return (time.perf_counter() - t) / EPOCHS, np.mean(model.predict(X_test) == y_test)

    results = [(memory_loop(), store_loop()) for _ in range(3)]
    mem = sorted(r[0] for r in results)[1]
    sto = sorted(r[1] for r in results)[1]
    return mem, sto


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    datasets = sorted({r["dataset"] for r in rows})
    width = 0.8 / len(datasets)
    x = np.arange(len(HEADS))
    for ax, key, label in zip(axes, ["accuracy", "fit_s", "peak_mib"],
                              ["test accuracy", "fit time (s)", "peak RSS (MiB)"]):
        for i, ds in enumerate(datasets):
            values = [next(r[key] for r in rows if r["dataset"] == ds and r["head"] == h) for h in HEADS]
            ax.bar(x + i * width, values, width, label=ds)
        ax.set_xticks(x + width * (len(datasets) - 1) / 2)
        ax.set_xticklabels(HEADS, rotation=35, ha="right", fontsize=8)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="features")
    fig.suptitle("Classifier heads on bottleneck features")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("HEAD", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    photo_store(), large_store()  # build the inputs once, outside the measured runs
    rows = []
    for dataset in ["photos", "large"]:
        for head in HEADS:
            res = subprocess.run([sys.executable, __file__, "--child", head, dataset],
                                 check=True, capture_output=True, text=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(head=head, dataset=dataset)
            rows.append(r)
            print(r, flush=True)
    ratios = []
    for dataset in ["photos", "large"]:
        (mem_s, mem_acc), (sto_s, sto_acc) = sgd_epoch_ratio(dataset)
        ratios.append([dataset, f"{mem_s * 1000:.0f}", f"{sto_s * 1000:.0f}", f"**{sto_s / mem_s:.2f}**",
                       f"{mem_acc:.3f}", f"{sto_acc:.3f}", f"{(sto_acc - mem_acc) * 100:+.1f}"])
    chart(rows, RESULTS / "bench_heads.png")
    table = markdown_table(
        ["features", "head", "test accuracy", "fit (s)", "peak RSS (MiB)"],
        [[r["dataset"], r["head"], f"{r['accuracy']:.3f}", f"{r['fit_s']:.2f}", f"{r['peak_mib']:,.0f}"]
         for r in rows],
    )
    body = (
        "`photos`: efficientnet_lite0 ImageNet features (1,280) of 560 real photo patches in 7 classes "
        "(70/30 split); `large`: generated 16,000 x 2,048 train / 4,000 test, 5 classes. "
        f"{EPOCHS} epochs for SGD/MLP ({EPOCHS * 2} for Keras); each head in a fresh process.\n\n"
        + table + "\n\n![heads](bench_heads.png)\n\n"
        "Out-of-core SGD epoch time, store vs the same partial_fit loop in memory (chunks of 1,024, "
        "scaled; median of 3; the store's time includes the scaler's extra pass):\n\n"
        + markdown_table(["features", "memory loop (ms/epoch)", "store (ms/epoch)", "ratio",
                          "memory acc.", "store acc.", "diff (points)"], ratios)
        + "\n\nTarget: ratio <= 1.3, accuracy within 0.5 point."
    )
    write_result("bench_heads", "Classifier heads: accuracy, fit time, peak memory", body)


if __name__ == "__main__":
    main()
