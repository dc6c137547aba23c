"""What verifying a converted OpenVINO model on every load costs.

Converts a registry backbone (random weights with a seed, so that the
conversion is cached) once into a fresh model cache, then times, in
interleaved rounds (median of each): loading the folder with every check
(info.json's own SHA-256, the id's document, size and SHA-256 of
``model.xml`` and ``model.bin``, the graph's output size), OpenVINO's
``read_model`` alone (the load before the checks), and building the Keras
network and hashing its weights (what checking the weights digest against
the network the parameters build would add to every load).

    python benchmarks/bench_openvino_verify.py [--backbone resnet50] [--size 224]
                                               [--rounds 5]
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, versions  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "bench_openvino_verify.txt"))
    args = parser.parse_args()
    os.environ["SKBOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-ov-")

    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import _openvino
    from skbottleneck.extraction._runner import CNNRunner, get_runner, weights_digest

    est = CNNFeatureTransformer(args.backbone, weights=None, random_state=0,
                                input_size=args.size, runtime="openvino", cache_dir=None).fit()
    runner = get_runner(est)
    path = runner.path
    _, doc = _openvino.model_id(est.fingerprint_, est.precision)
    core = _openvino._ov_core()
    sizes = {n: os.path.getsize(os.path.join(path, n)) for n in _openvino.MODEL_FILES}
    times = {"verified load": [], "read_model only": [], "Keras build + weights digest": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        assert _openvino._load(path, doc, est.pooling) is not None
        times["verified load"].append(time.perf_counter() - t)
        t = time.perf_counter()
        core.read_model(os.path.join(path, "model.xml"))
        times["read_model only"].append(time.perf_counter() - t)
        t = time.perf_counter()
        weights_digest(CNNRunner(est))
        times["Keras build + weights digest"].append(time.perf_counter() - t)
    lines = [f"# bench_openvino_verify, {datetime.date.today()}: {machine()}",
             f"# {versions('openvino', 'tensorflow', 'keras')}",
             f"# {args.backbone} {args.size} px, model.xml {sizes['model.xml']:,} B, "
             f"model.bin {sizes['model.bin']:,} B, median of {args.rounds} interleaved rounds"]
    for name, ts in times.items():
        lines.append(f"{name:32s} {statistics.median(ts):7.3f} s")
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
