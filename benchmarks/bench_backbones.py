"""CPU cost of each backbone family: images/s on TensorFlow and OpenVINO, peak RSS, GFLOP.

The CNN stage only (pre-decoded uint8 batches through the transformer's own
runner: preprocessing, folded model, pooling), at each model's native size,
random weights (the cost does not depend on their values):

- MobileNetV2, ResNet50, EfficientNet-Lite0: registry backbones, ``weights=None``;
- DINOv2-S/14 and DINOv2-B/14, SigLIP2-B/16: keras-hub models built from the
  presets' configs (ViT-S: 384 wide, 6 heads; ViT-B: 768 wide, 12 heads; 12
  layers each; SigLIP's text tower shrunk, it is not run), saved as local
  presets and used through ``CNNFeatureTransformer(backbone=<folder>)``.

GFLOP per image comes from TensorFlow's profiler on the runner's graph (1
multiply-add = 2 FLOP); "of peak" divides the achieved GFLOP/s by a float32
2048x2048 matmul measured in the same process just before (on a shared
machine the peak moves with the other processes' load, so each row has its
own). Each model runs in its own process, so that its peak RSS is its own.

    python benchmarks/bench_backbones.py [--batches 3] [--batch-size 8] [--models ...]
        [--runtimes tensorflow,openvino] [--out bench_backbones]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, peak_rss_mib, write_result  # noqa: E402

MODELS = ["mobilenet_v2", "resnet50", "efficientnet_lite0", "dinov2_small", "dinov2_base",
          "siglip2_base_patch16_224"]
_VIT = {"dinov2_small": (384, 6, 1536), "dinov2_base": (768, 12, 3072),
        "siglip2_base_patch16_224": (768, 12, 3072)}


def _preset(name, root):
    """A local preset folder with random weights built from ``name``'s config."""
    import keras_hub

    folder = Path(root) / name
    if (folder / "config.json").exists():
        return str(folder)
    models, layers = keras_hub.models, keras_hub.layers
    width, heads, mlp = _VIT[name]
    if name.startswith("dinov2"):
        models.DINOV2Backbone(patch_size=14, num_layers=12, hidden_dim=width, num_heads=heads,
                              intermediate_dim=mlp, image_shape=(224, 224, 3),
                              position_embedding_shape=(518, 518, 3)).save_to_preset(folder)
        layers.DINOV2ImageConverter(image_size=(224, 224), scale=1 / 255.0,
                                    offset=0.0).save_to_preset(folder)
    else:
        vision = models.SigLIPVisionEncoder(patch_size=16, hidden_dim=width, num_layers=12,
                                            num_heads=heads, intermediate_dim=mlp,
                                            image_shape=(224, 224, 3))
        text = models.SigLIPTextEncoder(vocabulary_size=64, embedding_dim=32, hidden_dim=32,
                                        num_layers=1, num_heads=2, intermediate_dim=32,
                                        max_sequence_length=16, projection_dim=width)
        models.SigLIPBackbone(vision, text).save_to_preset(folder)
        layers.SigLIPImageConverter(image_size=(224, 224), scale=1 / 127.5,
                                    offset=-1.0).save_to_preset(folder)
    return str(folder)


def _gflop(runner, size):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    model = runner.model  # the folded network (preprocessing and pooling cost ~nothing)
    fixed = tf.function(lambda x: model(x, training=False))
    concrete = fixed.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    graph = frozen.graph
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    flops = model_analyzer.profile(graph, options=opts).total_float_ops
    return flops / 1e9


def one(name, runtime, batches, batch_size, root):
    """Run one model in this process; print a JSON line."""
    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import get_runner

    backbone = _preset(name, root) if name in _VIT else name
    cnn = CNNFeatureTransformer(backbone, weights=None, random_state=0, cache_dir=None,
                                runtime=runtime, batch_size=batch_size).fit()
    runner = get_runner(cnn)
    size = cnn.input_size_[0]
    x = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    for _ in range(2):  # trace, settle the sub-batch scheme
        runner(x)
    start = time.perf_counter()
    for _ in range(batches):
        runner(x)
    seconds = time.perf_counter() - start
    out = {"name": name, "runtime": runtime, "size": size, "features": cnn.n_features_out_,
           "pooling": cnn.pooling_, "images_per_s": batches * batch_size / seconds,
           "peak_rss_mib": peak_rss_mib(), "matmul_peak": matmul_peak()}
    if runtime == "tensorflow":
        try:
            out["gflop"] = _gflop(runner, size)
        except Exception as e:  # pragma: no cover - profiler internals
            out["gflop_error"] = str(e)[:200]
    print(json.dumps(out))


def matmul_peak():
    import tensorflow as tf

    n = 2048
    a = tf.random.normal((n, n))
    tf.linalg.matmul(a, a).numpy()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        tf.linalg.matmul(a, a).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runtimes", default="tensorflow,openvino")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "RUNTIME"), help=argparse.SUPPRESS)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "bench_presets"))
    parser.add_argument("--out", default="bench_backbones", help="results/<OUT>.md")
    args = parser.parse_args()
    if args.one:
        return one(*args.one, args.batches, args.batch_size, args.root)
    rows, gflop = [], {}
    for name in args.models.split(","):
        for runtime in args.runtimes.split(","):
            proc = subprocess.run(
                [sys.executable, __file__, "--one", name, runtime, "--batches",
                 str(args.batches), "--batch-size", str(args.batch_size), "--root", args.root],
                capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode or not lines:
                rows.append([name, runtime, "-", "-", "failed: " + proc.stderr[-160:].strip(),
                             "", "", "", "", ""])
                continue
            r = json.loads(lines[-1])
            gflop.setdefault(name, r.get("gflop"))
            g = gflop.get(name)
            achieved = None if g is None else g * r["images_per_s"]
            peak = r["matmul_peak"]
            rows.append([name, runtime, f"{r['size']}", f"{r['features']} ({r['pooling']})",
                         f"{r['images_per_s']:.1f}", f"{r['peak_rss_mib']:.0f}",
                         "-" if g is None else f"{g:.2f}",
                         "-" if achieved is None else f"{achieved:.0f}",
                         f"{peak:.0f}",
                         "-" if achieved is None else f"{achieved / peak:.0%}"])
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    body = (f"CNN stage only, batches of {args.batch_size}, {args.batches} timed batches after "
            f"2 warm-up calls; random weights. Load average at the end: {load:.1f} on "
            f"{os.cpu_count()} cores (other processes share them). Peak: a float32 2048x2048 "
            "TensorFlow matmul in the same process just before.\n\n"
            + markdown_table(["backbone", "runtime", "input", "features (pooling)", "images/s",
                              "peak RSS MiB", "GFLOP/img", "GFLOP/s", "matmul peak GFLOP/s",
                              "of peak"], rows))
    write_result(args.out, "Backbone families on CPU: throughput, memory, FLOPs", body,
                 libs=("tensorflow", "keras", "keras-hub", "openvino", "numpy"))


if __name__ == "__main__":
    main()
