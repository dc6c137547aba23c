"""What int8 costs in accuracy: float32 against int8 features on real transfer tasks.

Real ImageNet features (EfficientNet-Lite0, weights shipped with the
package) of two real tasks, the same head (StandardScaler +
LogisticRegression(C=0.1)) throughout, each precision's head trained on its
own features:

- ``photos``: scikit-image photo patches, one class per photo, training
  patches from the left 60% of each photo, test patches from the right 40%
  (no pixel shared; ``bench_augment.photo_task``);
- ``fashion``: Fashion-MNIST (Debian's ``dataset-fashion-mnist``).

Columns: TensorFlow float32, OpenVINO float32 (the same features: their max
relative difference is printed), OpenVINO int8 quantised by NNCF on 64 of
the task's own training images (what ``precision="int8"`` does), the cost
in points, the float32 head applied to int8 features (what mixing the two
spaces would cost), the cosine of int8 to float32 features, and the CNN
stage's speed ratio int8 / float32 on this task's images.

    python benchmarks/bench_int8_accuracy.py [--quick] [--tasks photos,fashion]
"""

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, markdown_table, write_result  # noqa: E402
from bench_augment import fashion_task, head, photo_task  # noqa: E402

from skbottleneck import CNNFeatureTransformer  # noqa: E402


def features(cnn, paths):
    """Features of ``paths`` and the CNN stage's images/s."""
    result = cnn.extract(paths)
    return result.features, len(paths) / max(result.stats["cnn_s"], 1e-9)


def run_task(name, task):
    X_train, y_train, X_test, y_test, size = task
    cache = WORK / f"int8_cache_{name}"
    shutil.rmtree(cache, ignore_errors=True)  # each precision extracts from nothing
    kw = dict(input_size=size, cache_dir=cache)
    tf32 = CNNFeatureTransformer("efficientnet_lite0", runtime="tensorflow",
                                 **{**kw, "cache_dir": None}).fit()
    ov32 = CNNFeatureTransformer("efficientnet_lite0", runtime="openvino", **kw).fit()
    ov8 = CNNFeatureTransformer("efficientnet_lite0", precision="int8", **kw).fit(X_train)
    out = {"task": name, "n_train": len(X_train), "n_test": len(X_test), "size": size,
           "n_calibration": ov8.calibration_["n_images"]}
    feats, speed = {}, {}
    for label, cnn in [("tf32", tf32), ("ov32", ov32), ("int8", ov8)]:
        cnn.transform(X_test[:2])  # builds / converts the CNN: not timed
        train, s_train = features(cnn, X_train)
        test, s_test = features(cnn, X_test)
        feats[label], speed[label] = (train, test), statistics.median([s_train, s_test])
    ref = np.concatenate(feats["tf32"])
    out["ov32_max_rel"] = float(np.abs(np.concatenate(feats["ov32"]) - ref).max()
                                / np.abs(ref).max())
    heads = {}
    for label in feats:
        train, test = feats[label]
        heads[label] = head().fit(train, y_train)
        out[label] = heads[label].score(test, y_test)
    out["f32 head on int8"] = heads["ov32"].score(feats["int8"][1], y_test)
    a, b = feats["ov32"][1], feats["int8"][1]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    out["cosine"] = float(np.median(cos))
    out["cosine_min"] = float(cos.min())
    out["speed_int8_f32"] = speed["int8"] / speed["ov32"]
    out["speed_ov32_tf32"] = speed["ov32"] / speed["tf32"]
    shutil.rmtree(cache, ignore_errors=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", default="photos,fashion")
    args = parser.parse_args()
    scale = 4 if args.quick else 1
    tasks = {"photos": lambda: photo_task(40 // scale, 40 // scale),
             "fashion": lambda: fashion_task(2000 // scale, 2000 // scale)}
    rows, notes = [], []
    for name in args.tasks.split(","):
        r = run_task(name, tasks[name]())
        print(r, flush=True)
        cost = 100 * (r["int8"] - r["ov32"])
        rows.append([
            r["task"], f"{r['n_train']} / {r['n_test']}", r["size"], f"{r['tf32']:.3f}",
            f"{r['ov32']:.3f}", f"{r['int8']:.3f}", f"**{cost:+.1f}**",
            f"{r['f32 head on int8']:.3f}", f"{r['cosine']:.3f} (min {r['cosine_min']:.3f})",
            f"{r['speed_int8_f32']:.2f}x", f"{r['speed_ov32_tf32']:.2f}x",
        ])
        notes.append(f"- {name}: OpenVINO float32 features vs TensorFlow's: max relative "
                     f"difference {r['ov32_max_rel']:.1e}; int8 calibrated on "
                     f"{r['n_calibration']} training images.")
    body = (
        "EfficientNet-Lite0 ImageNet features, head StandardScaler + LogisticRegression(C=0.1) "
        "trained on each column's own training features (test images never seen by the "
        "calibration). Accuracy on the test images; 'int8 - f32' in points; speed ratios are "
        "the CNN stage's images/s on this task's images (one run each, not interleaved: see "
        "bench_extract for the interleaved speed figures).\n\n"
        + markdown_table(
            ["task", "train / test images", "input px", "TF f32", "OpenVINO f32", "int8",
             "int8 - f32 (points)", "f32 head on int8 features", "cosine int8 / f32 (median)",
             "CNN int8 / f32", "CNN OpenVINO f32 / TF"], rows)
        + "\n\nTarget: int8 within 0.5 point of float32.\n\n" + "\n".join(notes)
    )
    write_result("bench_int8_accuracy" + ("_quick" if args.quick else ""),
                 "int8 features: accuracy cost against float32", body,
                 libs=("tensorflow", "keras", "openvino", "nncf", "numpy", "scikit-learn"))


if __name__ == "__main__":
    main()
