"""Which NNCF settings keep int8 closest to float32: accuracy of each on real tasks.

``bench_int8_accuracy`` measures what ``precision="int8"`` does; this script
asks what it should do. The same EfficientNet-Lite0 graph the transformer
converts (uint8 in, preprocessing, folded CNN, pooling), quantised by
``nncf.quantize`` with each setting below on the same 64 training images,
then the same head (StandardScaler + LogisticRegression(C=0.1)) trained on
each variant's own training features and scored on the test images:

- ``default``: what the package did until now (NNCF's defaults);
- ``overflow fix: all layers``: ``OverflowFix.ENABLE``. On CPUs without
  VNNI (AVX2 only, like this machine), int8 products are summed in 16 bits
  and can saturate; NNCF's default keeps a bit of headroom (7-bit weights)
  in the first layer only, this setting in every layer;
- ``full bias correction``: ``fast_bias_correction=False``;
- ``mixed preset``: asymmetric activations;
- ``CPU target``: ``target_device=CPU``;
- ``256 calibration images``: four times the samples;
- the overflow fix combined with more images, with the depthwise
  convolutions or the last convolution left in float32, or with full bias
  correction.

    python benchmarks/bench_int8_variants.py [--tasks photos,fashion] [--variants ...]
"""

import argparse
import contextlib
import io
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_result  # noqa: E402
from bench_augment import fashion_task, head, photo_task  # noqa: E402


def variants(nncf):
    fix = nncf.AdvancedQuantizationParameters
    return {
        "default": {},
        "overflow fix: all layers": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.ENABLE)},
        "overflow fix: none": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.DISABLE)},
        "full bias correction": {"fast_bias_correction": False},
        "mixed preset": {"preset": nncf.QuantizationPreset.MIXED},
        "CPU target": {"target_device": nncf.TargetDevice.CPU},
        "256 calibration images": {"n_calibration": 256},
        "overflow fix + 256 calibration images": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.ENABLE),
            "n_calibration": 256},
        "overflow fix + depthwise convolutions in float": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.ENABLE),
            "ignored_scope": nncf.IgnoredScope(types=["GroupConvolution"])},
        "overflow fix + last convolution in float": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.ENABLE),
            "ignored_scope": "last conv"},
        "overflow fix + full bias correction": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.ENABLE),
            "fast_bias_correction": False},
        "overflow fix + depthwise in float + full bias correction": {
            "advanced_parameters": fix(overflow_fix=nncf.OverflowFix.ENABLE),
            "ignored_scope": nncf.IgnoredScope(types=["GroupConvolution"]),
            "fast_bias_correction": False},
    }


def run_task(name, task, wanted):
    import nncf
    import openvino as ov

    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import ExtractionEngine
    from skbottleneck.extraction._openvino import convert_graph
    from skbottleneck.images import load_image

    nncf.set_log_level(logging.ERROR)
    X_train, y_train, X_test, y_test, size = task
    cnn = CNNFeatureTransformer("efficientnet_lite0", runtime="tensorflow", input_size=size,
                                cache_dir=None).fit()
    model = convert_graph(ExtractionEngine(cnn).runner)
    core = ov.Core()
    decode = lambda paths: np.stack([load_image(p, (size, size)).astype("uint8") for p in paths])  # noqa: E731
    train, test = decode(X_train), decode(X_test)
    spread = lambda n: train[np.linspace(0, len(train) - 1, n).astype(int)]  # noqa: E731

    def features(m, images):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(images[i:i + 32])[0] for i in range(0, len(images), 32)])

    def speed(m, rounds=3):
        """Images/s of batches of 32 (median of ``rounds``; the first call is not timed)."""
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        batches = [test[i:i + 32] for i in range(0, len(test) - 31, 32)]
        compiled(batches[0])
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for b in batches:
                compiled(b)
            times.append(time.perf_counter() - t)
        return 32 * len(batches) / statistics.median(times)

    def score(f_train, f_test):
        return head().fit(f_train, y_train).score(f_test, y_test)

    f32 = features(model, train), features(model, test)
    acc32 = score(*f32)
    speed32 = speed(model)
    rows = [[name, "float32", f"{acc32:.3f}", "", "", "1.00"]]
    for label, kw in variants(nncf).items():
        if wanted and label not in wanted:
            continue
        kw = dict(kw)
        if kw.get("ignored_scope") == "last conv":
            convs = [op.get_friendly_name() for op in model.get_ordered_ops()
                     if op.get_type_name() == "Convolution"]
            kw["ignored_scope"] = nncf.IgnoredScope(names=convs[-1:])
        calib = spread(kw.pop("n_calibration", 64))
        samples = [calib[i:i + 1] for i in range(len(calib))]
        with contextlib.redirect_stdout(io.StringIO()):
            q = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), **kw)
        f8 = features(q, train), features(q, test)
        acc8 = score(*f8)
        a, b = f8[1], f32[1]
        cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        rows.append([name, label, f"{acc8:.3f}", f"**{100 * (acc8 - acc32):+.1f}**",
                     f"{np.median(cos):.3f} (min {cos.min():.3f})",
                     f"{speed(q) / speed32:.2f}"])
        print(rows[-1], flush=True)
    return rows, f"- {name}: {len(X_train)} training / {len(X_test)} test images, {size} px"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="photos,fashion")
    parser.add_argument("--variants", nargs="*")
    args = parser.parse_args()
    tasks = {"photos": lambda: photo_task(40, 40), "fashion": lambda: fashion_task(2000, 2000)}
    rows, notes = [], []
    for name in args.tasks.split(","):
        r, note = run_task(name, tasks[name](), args.variants)
        rows += r
        notes.append(note)
    body = (
        "EfficientNet-Lite0 (ImageNet weights) as the transformer converts it, quantised by "
        "NNCF with each setting on evenly spread training images; head StandardScaler + "
        "LogisticRegression(C=0.1) trained on each variant's own training features. "
        "'points' is int8 minus float32 accuracy on the test images; cosine of int8 to "
        "float32 test features; CNN speed: images/s of batches of 32 of the test images, "
        "one stream, against float32 (medians of 3 passes, not interleaved: a rough "
        "guide; bench_extract measures int8 speed properly).\n\n"
        + markdown_table(["task", "variant", "accuracy", "points", "cosine (median)",
                          "CNN speed / float32"], rows)
        + "\n\n" + "\n".join(notes)
    )
    write_result("bench_int8_variants", "int8: NNCF settings against float32", body,
                 libs=("openvino", "nncf", "numpy", "scikit-learn"))


if __name__ == "__main__":
    main()
