"""Which ``batch_size`` should CNNFeatureTransformer default to?

For MobileNetV2, ResNet50 and VGG16 (random weights: weights do not change
speed) on generated 500x375 JPEG photo patches, ``transform`` with the cache
off at each batch size, interleaved round by round (the machine is shared
and noisy: each round compares runs made seconds apart). Prints images/s
(median over rounds), each size's rate relative to batch 32 (median of the
per-round ratios) and the peak RSS each size adds, measured in a fresh
process per size.

    python benchmarks/bench_batch_size.py [--quick]
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, timed, write_result  # noqa: E402
from bench_extract import photo_jpegs  # noqa: E402

SIZES = (8, 16, 32, 64, 128)
IMAGES = {"mobilenet_v2": 384, "resnet50": 128, "vgg16": 64}

_RSS_CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
from _common import peak_rss_mib
from skbottleneck import CNNFeatureTransformer
paths = json.loads(sys.argv[1])
cnn = CNNFeatureTransformer({name!r}, weights=None, random_state=0, cache_dir=None,
                            batch_size={batch}).fit()
cnn.transform(paths[:{batch}])
base = peak_rss_mib()
cnn.transform(paths)
print(json.dumps([base, peak_rss_mib()]))
"""


def peak_rss(name, batch, paths):
    """(peak RSS after one batch, after the whole transform) in a fresh process, MiB."""
    code = _RSS_CHILD.format(bench=str(Path(__file__).resolve().parent), name=name, batch=batch)
    out = subprocess.run([sys.executable, "-c", code, json.dumps([str(p) for p in paths])],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument("--backbones", nargs="*", default=list(IMAGES))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds

    from skbottleneck import CNNFeatureTransformer

    rows = []
    for name in args.backbones:
        n = IMAGES[name] // (4 if args.quick else 1)
        paths = photo_jpegs(n)
        cnns = {b: CNNFeatureTransformer(name, weights=None, random_state=0, cache_dir=None,
                                         batch_size=b).fit() for b in SIZES}
        for b, cnn in cnns.items():
            cnn.transform(paths[:b])  # warm-up: trace the compiled CNN for this batch shape
        rates = {b: [] for b in SIZES}
        for r in range(rounds):
            order = SIZES if r % 2 == 0 else SIZES[::-1]  # no size always runs first
            for b in order:
                rates[b].append(n / timed(lambda: cnns[b].transform(paths), 1)[0])
        cnns = None
        for b in SIZES:
            rel = statistics.median(x / y for x, y in zip(rates[b], rates[32]))
            base, peak = peak_rss(name, b, paths)
            rows.append([name, b, n, f"{statistics.median(rates[b]):.1f}", f"**{rel:.2f}**",
                         f"{peak:.0f}", f"{peak - base:+.0f}"])
            print(rows[-1], flush=True)

    header = ["backbone", "batch_size", "images", "transform img/s", "vs batch 32",
              "peak RSS MiB", "RSS added by the whole run"]
    body = (
        "`CNNFeatureTransformer.transform`, cache off, on generated 500x375 JPEG photo patches. "
        f"The batch sizes run interleaved (alternating order), {rounds} rounds: images/s are "
        "medians, 'vs batch 32' the median of the per-round ratios. Peak RSS comes from a fresh "
        "process per batch size.\n\n" + markdown_table(header, rows)
    )
    write_result("bench_batch_size" + ("_quick" if args.quick else ""),
                 "Batch size of the extraction", body)


if __name__ == "__main__":
    main()
