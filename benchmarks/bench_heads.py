"""Which head, at what cost? Accuracy, fit time and peak memory of classifier heads.

Two feature sets:

- ``fashion``: real ImageNet features of a real image task — the offline
  ``efficientnet_lite0`` backbone (ImageNet weights shipped with the
  package) at 64 px on 8,000 Fashion-MNIST images (Debian's
  ``dataset-fashion-mnist``), 10 classes;
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
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, WORK, markdown_table, peak_rss_mib, write_result  # noqa: E402

HEADS = ["logreg (memory)", "sgd (memory)", "incremental sgd (store)", "incremental mlp (store)",
         "keras mlp (memory)", "keras mlp (store)"]
EPOCHS = 5


def fashion_store():
    """Real ImageNet features of Fashion-MNIST images: train and test stores."""
    from bench_memory import image_files

    from skbottleneck import CNNFeatureTransformer, FeatureStore

    train, test = WORK / "heads_fashion_train.h5", WORK / "heads_fashion_test.h5"
    if not (train.exists() and test.exists()):
        entries = image_files(8000)
        paths = [e[0] for e in entries]
        labels = np.array([e[1] for e in entries])
        cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=64, cache_dir=WORK / "cache")
        cnn.extract(paths[:6000], labels[:6000], store=train)
        cnn.extract(paths[6000:], labels[6000:], store=test)
    return FeatureStore(train), FeatureStore(test)


def large_store():
    """16,000 + 4,000 rows x 2,048 generated features in 5 overlapping classes."""
    from skbottleneck import FeatureStore
    from skbottleneck.store import StoreWriter

    train, test = WORK / "heads_large_train.h5", WORK / "heads_large_test.h5"
    if not (train.exists() and test.exists()):
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(5, 2048)).astype(np.float32) * 0.03
        for path, n in [(train, 16000), (test, 4000)]:
            y = rng.integers(0, 5, n)
            w = StoreWriter(path, paths=[f"row{i}" for i in range(n)], labels=y, n_features=2048,
                            overwrite=True)
            for start in range(0, n, 2000):
                rows = np.arange(start, min(n, start + 2000))
                X = centers[y[rows]] + rng.normal(size=(len(rows), 2048)).astype(np.float32)
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
    train, test = fashion_store() if dataset == "fashion" else large_store()
    X_test, y_test = test.to_numpy(), test.labels
    in_memory = head.endswith("(memory)")
    base_rss = peak_rss_mib()
    model = make_head(head, len(train))
    t = time.perf_counter()
    if in_memory:
        model.fit(train.to_numpy(), train.labels)
    else:
        model.fit(train)
    fit_s = time.perf_counter() - t
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    peak = peak_rss_mib()
    print(json.dumps({"accuracy": accuracy, "fit_s": fit_s, "peak_mib": peak, "base_mib": base_rss}))


def sgd_epoch_ratio(dataset):
    """Out-of-core SGD from the store vs the same partial_fit loop on an in-memory array."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    from skbottleneck import IncrementalClassifier

    train, test = fashion_store() if dataset == "fashion" else large_store()
    X, y = train.to_numpy(), train.labels
    X_test, y_test = test.to_numpy(), test.labels
    classes = np.unique(y)
    def memory_loop(seed):
        rng = np.random.default_rng(seed)
        est = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed)
        t = time.perf_counter()
        scaler = StandardScaler()  # the same first pass as IncrementalClassifier(scale=True)
        for start in range(0, len(X), 1024):
            scaler.partial_fit(X[start:start + 1024])
        for _ in range(EPOCHS):
            order = rng.permutation(len(X))
            for start in range(0, len(X), 1024):
                idx = order[start:start + 1024]
                est.partial_fit(scaler.transform(X[idx]), y[idx], classes=classes)
        return (time.perf_counter() - t) / EPOCHS, np.mean(est.predict(scaler.transform(X_test)) == y_test)

    def store_loop(seed):
        model = IncrementalClassifier(SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed),
                                      epochs=EPOCHS, random_state=seed)
        t = time.perf_counter()
        model.fit(train)
        return (time.perf_counter() - t) / EPOCHS, np.mean(model.predict(X_test) == y_test)

    # seeds alternate the two loops; time: median ratio, accuracy: mean over seeds
    runs = [(memory_loop(seed), store_loop(seed)) for seed in range(5)]
    ratio = statistics.median(s[0] / m[0] for m, s in runs)
    mem_s = statistics.median(m[0] for m, _ in runs)
    sto_s = statistics.median(s[0] for _, s in runs)
    return (mem_s, float(np.mean([m[1] for m, _ in runs]))), (sto_s, float(np.mean([s[1] for _, s in runs]))), ratio


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
    axes[0].set_ylim(0, 1.15)
    axes[0].legend(title="features", loc="upper center", ncol=len(datasets))
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
    fashion_store(), large_store()  # build the inputs once, outside the measured runs
    rows = []
    for dataset in ["fashion", "large"]:
        for head in HEADS:
            res = subprocess.run([sys.executable, __file__, "--child", head, dataset],
                                 check=True, capture_output=True, text=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(head=head, dataset=dataset)
            rows.append(r)
            print(r, flush=True)
    ratios = []
    for dataset in ["fashion", "large"]:
        (mem_s, mem_acc), (sto_s, sto_acc), ratio = sgd_epoch_ratio(dataset)
        ratios.append([dataset, f"{mem_s * 1000:.0f}", f"{sto_s * 1000:.0f}", f"**{ratio:.2f}**",
                       f"{mem_acc:.3f}", f"{sto_acc:.3f}", f"{(sto_acc - mem_acc) * 100:+.1f}"])
    chart(rows, RESULTS / "bench_heads.png")
    table = markdown_table(
        ["features", "head", "test accuracy", "fit (s)", "peak RSS (MiB)"],
        [[r["dataset"], r["head"], f"{r['accuracy']:.3f}", f"{r['fit_s']:.2f}", f"{r['peak_mib']:,.0f}"]
         for r in rows],
    )
    body = (
        "`fashion`: efficientnet_lite0 ImageNet features (1,280, at 64 px) of Fashion-MNIST images, "
        "6,000 train / 2,000 test, 10 classes; `large`: generated 16,000 x 2,048 train / 4,000 test, 5 classes. "
        f"{EPOCHS} epochs for SGD/MLP ({EPOCHS * 2} for Keras); each head in a fresh process.\n\n"
        + table + "\n\n![heads](bench_heads.png)\n\n"
        "Out-of-core SGD epoch time, `IncrementalClassifier` over the store vs the same partial_fit "
        "loop over an in-memory array (chunks of 1,024, a StandardScaler first pass in both, "
        f"{EPOCHS} epochs; 5 seeds, alternating: time = median of the per-seed ratios, accuracy = mean "
        "over the seeds):\n\n"
        + markdown_table(["features", "memory loop (ms/epoch)", "store (ms/epoch)", "ratio",
                          "memory acc.", "store acc.", "diff (points)"], ratios)
        + "\n\nTarget: ratio <= 1.3, accuracy within 0.5 point."
    )
    write_result("bench_heads", "Classifier heads: accuracy, fit time, peak memory", body)


if __name__ == "__main__":
    main()
