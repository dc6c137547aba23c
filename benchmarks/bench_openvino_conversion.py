"""Two ways to hand the runner's graph to OpenVINO: time, peak memory, speed, features.

``graphdef``: freeze the runner's concrete function (variables become
constants) and convert the frozen GraphDef; ``function``: convert the concrete
function itself. For each model and each way, a new process builds the
transformer's TensorFlow runner (random weights, native size), converts it,
and records the conversion's seconds and the process's peak RSS (``VmHWM``:
this is the memory a first ``runtime="openvino"`` run needs). Then this
process, with OpenVINO only, reads both converted models, compiles them as the
runner does (f32, throughput hint) and times them on the same uint8 batches,
interleaved, and compares their outputs.

    python benchmarks/bench_openvino_conversion.py [--models ...] [--rounds 5] [--out NAME]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, peak_rss_mib, write_result  # noqa: E402
from bench_backbones import _VIT, _preset  # noqa: E402

MODELS = ["mobilenet_v2", "resnet50", "convnext_tiny", "dinov2_small", "dinov2_base",
          "siglip2_base_patch16_224"]
WAYS = ["graphdef", "function"]


def convert(name, way, root, out):
    """In this process: build ``name``'s runner, convert it ``way``, save it to ``out``."""
    import openvino as ov
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import ExtractionEngine

    backbone = _preset(name, root) if name in _VIT else name
    cnn = CNNFeatureTransformer(backbone, weights=None, random_state=0, cache_dir=None,
                                runtime="tensorflow").fit()
    runner = ExtractionEngine(cnn).runner
    before = peak_rss_mib()
    start = time.perf_counter()
    function = runner._fn.get_concrete_function()
    if way == "graphdef":
        model = ov.convert_model(convert_variables_to_constants_v2(function).graph.as_graph_def())
    else:
        model = ov.convert_model(function)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    ov.save_model(model, out, compress_to_fp16=False)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "before_mib": before,
                      "size": cnn.input_size_[0]}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "bench_presets"))
    parser.add_argument("--out", default="bench_openvino_conversion", help="results/<OUT>.md")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "WAY", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return convert(*args.one[:2], args.root, args.one[2])

    import openvino as ov

    core = ov.Core()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            made = {}
            for way in WAYS:
                out = os.path.join(tmp, f"{name}-{way}.xml")
                proc = subprocess.run(
                    [sys.executable, __file__, "--root", args.root, "--one", name, way, out],
                    capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                if proc.returncode:
                    made[way] = {"error": proc.stderr.strip().splitlines()[-1][:120]}
                    continue
                made[way] = json.loads(proc.stdout.strip().splitlines()[-1])
                made[way]["compiled"] = core.compile_model(
                    core.read_model(out), "CPU",
                    {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"})
            ok = [w for w in WAYS if "compiled" in made[w]]
            size = made[ok[0]]["size"] if ok else 0
            x = np.random.default_rng(0).integers(0, 256, (args.batch_size, size, size, 3),
                                                  dtype=np.uint8)
            outputs, times = {}, {w: [] for w in ok}
            for w in ok:
                outputs[w] = made[w]["compiled"](x)[0]  # the first call is not timed
            for _ in range(args.rounds):
                for w in ok:
                    start = time.perf_counter()
                    made[w]["compiled"](x)
                    times[w].append(time.perf_counter() - start)
            diff = ""
            if len(ok) == 2:
                a, b = outputs["graphdef"], outputs["function"]
                diff = f"{np.abs(a - b).max() / np.abs(a).max():.1e}"
            for w in WAYS:
                m = made[w]
                if "error" in m:
                    rows.append([name, w, "failed: " + m["error"], "", "", "", ""])
                    continue
                ips = args.batch_size / statistics.median(times[w])
                rows.append([name, w, f"{m['seconds']:.1f}", f"{m['peak_rss_mib']:.0f}",
                             f"{m['before_mib']:.0f}", f"{ips:.1f}",
                             diff if w == "function" else ""])
            print(rows[-2:], flush=True)
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "?"
    body = (f"Random weights, native input size; batches of {args.batch_size}, median of "
            f"{args.rounds} interleaved timed calls after one untimed call per model. Peak RSS: "
            "the converting process's VmHWM (TensorFlow model built, converted); 'before': "
            "its VmHWM once the model was built, before converting. 'max rel. diff': the largest "
            "difference between the two converted models' features over the largest feature. "
            f"Load average at the end: {load} on {os.cpu_count()} cores.\n\n"
            + markdown_table(["model", "way", "conversion s", "peak RSS MiB", "before MiB",
                              "images/s (OpenVINO)", "max rel. diff"], rows))
    write_result(args.out,
                 "OpenVINO conversion: frozen GraphDef vs the concrete function", body,
                 libs=("tensorflow", "keras", "keras-hub", "openvino", "numpy"))


if __name__ == "__main__":
    main()
