"""Head defaults: how close do the default heads come to an exact logistic regression?

The same EfficientNet-Lite0 ImageNet features (weights shipped with the
package), three real tasks, every head trained on the same training rows
and scored on the same held-out rows:

- ``demo``: the task of ``examples/demo.py`` (``make demo``): the seven
  scikit-image photos, 12 training patches per photo from the left 60% of
  each photo and 40 test patches from the right 40% (no pixel shared), 96 px;
- ``photos``: the same kind of split, larger: the four default photos,
  160 / 160 patches each (640 / 640), 96 px;
- ``fashion``: Fashion-MNIST (Debian's ``dataset-fashion-mnist``, required),
  the first 2,000 images of its training set to train on and the next 2,000
  to test on, 64 px.

The heads: the exact solver (StandardScaler + ``LogisticRegression``,
L-BFGS, a small grid of C, C=0.1 the reference); the README's in-memory head
(StandardScaler + ``SGDClassifier(loss="log_loss")``) and out-of-core head
(``IncrementalClassifier(SGDClassifier(loss="log_loss"), epochs=5)``); the
demo's old head (``alpha=1e-3``); the CLI's ``train --head logreg`` as it
was (``IncrementalClassifier`` over ``SGDClassifier(loss="log_loss")``, 10
epochs) and as it is (``build_head("logreg")``); ``IncrementalClassifier()``
with its defaults; and a grid of candidate out-of-core settings (alpha,
averaging, learning rate, epochs). Out-of-core heads are trained from a
:class:`~skbottleneck.FeatureStore`, read in chunks, as the CLI does.

Features are extracted once and kept under ``--cache`` (default
``/tmp/bench_heads_cache``: the feature cache and one ``.npz`` per task), so
a second run only trains heads.

    python benchmarks/bench_head_defaults.py [--quick] [--seeds 5] [--tasks demo,photos,fashion]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_result  # noqa: E402

from sklearn.linear_model import LogisticRegression, SGDClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

#: The tasks: (classes, train per class, test per class, px) of a regions split,
#: or "fashion".
TASKS = {
    "demo": (7, 12, 40, 96),
    "photos": (4, 160, 160, 96),
    "fashion": "fashion",
}


def photo_task(root, classes, n_train, n_test, size):
    from skbottleneck.datasets import load_image_folder, make_photo_regions_split

    split = make_photo_regions_split(root, classes=classes, n_train=n_train, n_test=n_test,
                                     size=size, random_state=0, exist_ok=True)
    return (*load_image_folder(split.train), *load_image_folder(split.test), size)


def fashion_task(root, n_train, n_test):
    """The first ``n_train + n_test`` Fashion-MNIST training images, as PNG files under ``root``.

    Refuses to run without the real data set (``bench_memory.image_files``
    falls back to random images, right for a memory benchmark, meaningless here).
    """
    import gzip

    from PIL import Image

    from bench_memory import FASHION

    try:
        with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
    except OSError as e:
        raise SystemExit(f"Fashion-MNIST not found under {FASHION} "
                         f"(apt-get install dataset-fashion-mnist): {e}") from e
    n = n_train + n_test
    root.mkdir(parents=True, exist_ok=True)
    paths = np.array([str(root / f"{i:05d}.png") for i in range(n)])
    for path, image in zip(paths, images[:n]):
        if not Path(path).exists():
            Image.fromarray(image).save(path)
    labels = labels[:n].astype(str)
    return paths[:n_train], labels[:n_train], paths[n_train:], labels[n_train:], 64


def features(name, cache, quick):
    """``(X_train, y_train, X_test, y_test, train_store)`` of a task, extracted once."""
    from skbottleneck import CNNFeatureTransformer

    tag = f"{name}{'_quick' if quick else ''}"
    npz, store = cache / f"{tag}.npz", cache / f"{tag}_train.h5"
    if npz.exists() and store.exists():
        d = np.load(npz)
        return d["X_train"], d["y_train"], d["X_test"], d["y_test"], store
    spec = TASKS[name]
    if spec == "fashion":
        task = fashion_task(cache / "fashion_png", *((500, 500) if quick else (2000, 2000)))
    else:
        classes, n_train, n_test, size = spec
        if quick:
            n_train, n_test = max(4, n_train // 4), max(4, n_test // 4)
        task = photo_task(cache / f"{tag}_images", classes, n_train, n_test, size)
    p_train, y_train, p_test, y_test, size = task
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=size, cache_dir=cache / "cnn",
                                verbose=1).fit()
    t = time.perf_counter()
    X_train, X_test = cnn.transform(p_train), cnn.transform(p_test)
    print(f"{name}: {len(p_train) + len(p_test)} images extracted in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    cnn.extract(p_train, y_train, store=store, overwrite=True)  # from the cache: no CNN
    np.savez(npz, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    return X_train, y_train, X_test, y_test, store


def exact(C):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def sgd_in_memory(seed, **kw):
    return make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=seed, **kw))


def out_of_core(seed, epochs=10, **kw):
    from skbottleneck import IncrementalClassifier

    return IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=seed, **kw),
                                 epochs=epochs, random_state=seed)


def named_heads(candidates):
    """name -> (factory of a seed, trained from the store?, depends on the seed?)."""
    from skbottleneck import IncrementalClassifier
    from skbottleneck.heads import EXACT_C, exact_logreg
    from skbottleneck.heads import build_head

    heads = {f"exact LR, C={C}": (lambda seed, C=C: exact(C), False, False)
             for C in (0.001, 0.01, 0.1, 1.0)}
    heads.update({
        "README in memory: SGD log_loss": (lambda seed: sgd_in_memory(seed), False, True),
        "README out of core: IncrementalClassifier(SGD log_loss), 5 epochs":
            (lambda seed: out_of_core(seed, epochs=5), True, True),
        "old demo head: SGD log_loss alpha=1e-3":
            (lambda seed: sgd_in_memory(seed, alpha=1e-3), False, True),
        "old CLI --head logreg: SGD log_loss, 10 epochs": (out_of_core, True, True),
        f"CLI --head logreg, store fits in memory: exact (C={EXACT_C})":
            (lambda seed: exact_logreg(random_state=seed), False, False),
        "CLI --head logreg, store over the budget: build_head(\"logreg\")":
            (lambda seed: build_head("logreg", random_state=seed), True, True),
        "IncrementalClassifier() defaults":
            (lambda seed: IncrementalClassifier(random_state=seed), True, True),
    })
    for kw in candidates:
        label = "candidate: " + ", ".join(f"{k}={v}" for k, v in kw.items())
        heads[label] = (lambda seed, kw=kw: out_of_core(seed, **kw), True, True)
    return heads


CANDIDATES = [
    dict(alpha=a, average=avg, epochs=e)
    for a in (1e-4, 1e-3, 3e-3, 1e-2) for avg in (False, True) for e in (10, 20)
] + [
    dict(alpha=a, learning_rate="adaptive", eta0=0.01, epochs=20) for a in (1e-3, 1e-2)
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a quarter of the images (fashion 500 / 500) and no candidate grid")
    parser.add_argument("--tasks", default="demo,photos,fashion")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of every SGD head")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_heads_cache"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    from skbottleneck import FeatureStore

    tasks = args.tasks.split(",")
    heads = named_heads(CANDIDATES[:2] if args.quick else CANDIDATES)
    seeds = range(args.seeds)
    scores, seconds, sizes = {}, {}, {}
    for name in tasks:
        X_train, y_train, X_test, y_test, store_path = features(name, args.cache, args.quick)
        sizes[name] = f"{len(X_train)} / {len(X_test)}"
        with FeatureStore(store_path) as store:
            for label, (make, from_store, seeded) in heads.items():
                accs, times = [], []
                for seed in seeds if seeded else [0]:
                    t = time.perf_counter()
                    head = make(seed).fit(store) if from_store else make(seed).fit(X_train, y_train)
                    times.append(time.perf_counter() - t)
                    accs.append(float(np.mean(head.predict(X_test) == y_test)))
                scores[label, name], seconds[label, name] = np.array(accs), np.median(times)
                print(f"{name:8s} mean {np.mean(accs):.3f} min {np.min(accs):.3f} "
                      f"{seconds[label, name]:6.2f} s  {label}", flush=True)

    reference = "exact LR, C=0.1"

    def cell(label, task):
        acc = scores[label, task]
        return f"{acc[0]:.3f}" if len(acc) == 1 else f"{acc.mean():.3f} ({acc.min():.3f})"

    rows = []
    for label in heads:
        ref = {t: scores[reference, t][0] for t in tasks}
        mean_gap = min(scores[label, t].mean() - ref[t] for t in tasks)
        worst_gap = min(scores[label, t].min() - ref[t] for t in tasks)
        rows.append([label] + [cell(label, t) for t in tasks]
                    + [f"{mean_gap * 100:+.1f}", f"{worst_gap * 100:+.1f}",
                       f"{max(seconds[label, t] for t in tasks):.1f}"])
    body = (
        "Accuracy on held-out images of heads trained on the same EfficientNet-Lite0 ImageNet "
        "features (train / test rows: " + ", ".join(f"{t} {sizes[t]}" for t in tasks) + "). "
        "Out-of-core heads are trained from a FeatureStore in chunks. SGD heads are run with "
        f"seeds 0 to {args.seeds - 1}: mean (lowest) accuracy; the exact solver is deterministic. "
        f"Gaps: accuracy minus that of `{reference}`, in points, the lowest over the tasks, "
        "of the mean over seeds and of the worst seed. Fit time: median over seeds, slowest "
        "task (on a shared machine).\n\n"
        + markdown_table(["head"] + tasks + ["gap, mean", "gap, worst seed", "fit (s)"], rows)
    )
    if args.quick:  # a check of the script, not a result
        print(body)
    else:
        write_result("bench_head_defaults", "Head defaults against an exact logistic regression",
                     body)


if __name__ == "__main__":
    main()
