"""TensorFlow's CNN stage: whole batches against sub-batches, with and without thread settings.

Issue #14 asks the TensorFlow path to take whichever is faster on the
machine of today's scheme and sub-batches on inter-op threads. Side by side:

  today      TensorFlow's default thread pools; one batch of 32 through the
             transformer's compiled, folded graph (bench_extract's (f))
  split-k    the same thread pools; the batch cut into k sub-batches in one
             ``tf.function``, whose k independent branches TensorFlow's
             inter-op threads run side by side (what the package does on a
             CPU, with k=4, when its runner measures it faster:
             ``skbottleneck/extraction/_sub_batches.py``)
  sub-k      the split-k graph with intra-op threads 1 and inter-op threads k
             (one core per branch): settings TensorFlow fixes when it starts,
             which a library cannot set, measured for reference

Each scheme runs in its own worker process (started before it imports
TensorFlow); the parent asks the workers for one round at a time, in turn,
so that the schemes are interleaved on this shared machine. Every worker
runs the same pre-decoded batches of real photo patches through the same
folded graph (random weights, seed 0) and sends its features back: they are
compared with today's bit for bit, and, as a yardstick, today's own
features from batches of 16 (what changing the batch alone does on this CPU).

With ``--transform``, the script instead measures what counts in the end:
``CNNFeatureTransformer.transform`` on 500x375 JPEG files (decoding and
resizing share the cores), cache off, with the runner's scheme forced to
whole batches or to four sub-batches, interleaved, in one process.

    python benchmarks/bench_tf_threads.py [--rounds N] [--backbones NAME ...] [--schemes ...]
    python benchmarks/bench_tf_threads.py --transform [--rounds N] [--backbones NAME ...]
"""

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_result  # noqa: E402

BATCH = 32
BATCHES = {"mobilenet_v2": 8, "resnet50": 4, "vgg16": 2}
#: name -> (sub-batches, intra-op threads, inter-op threads); None: TensorFlow's default
SCHEMES = {"today": (1, None, None), "sub-2": (2, 1, 2), "sub-4": (4, 1, 4),
           "split-2": (2, None, None), "split-4": (4, None, None)}


def _worker(conn, scheme, name, images):
    """One scheme's process: set the thread pools, build, then time rounds on request."""
    import tensorflow as tf

    k, intra, inter = SCHEMES[scheme]
    if intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import ExtractionEngine

    size = images.shape[1:3]
    cnn = CNNFeatureTransformer(name, weights=None, random_state=0, cache_dir=None,
                                input_size=tuple(int(s) for s in size),
                                runtime="tensorflow", batch_size=BATCH).fit()
    inner = ExtractionEngine(cnn).runner._fn
    if k == 1:
        fn = inner
    else:
        @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.uint8)])
        def fn(x):
            return tf.concat([inner(part) for part in tf.split(x, k)], axis=0)
    batches = [tf.constant(images[i:i + BATCH]) for i in range(0, len(images), BATCH)]
    fn(batches[0])  # trace
    feats = np.concatenate([fn(b).numpy() for b in batches])
    extra = {}
    if scheme == "today":  # the yardstick: today's graph on batches of 16
        extra["half"] = np.concatenate([inner(tf.constant(images[i:i + 16])).numpy()
                                        for i in range(0, len(images), 16)])
    conn.send((feats, extra))
    while conn.recv() == "round":
        t = time.perf_counter()
        for b in batches:
            fn(b).numpy()
        conn.send(time.perf_counter() - t)
    conn.close()


def decoded_photos(n, size):
    from bench_extract import photo_jpegs

    from skbottleneck.images import load_image

    return np.stack([load_image(p, size).astype("uint8") for p in photo_jpegs(n)])


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def transform_rows(backbones, rounds):
    """``transform`` end to end, whole batches against sub-batches, interleaved."""
    from bench_extract import SIZES, photo_jpegs

    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import ExtractionEngine
    from skbottleneck.extraction._sub_batches import SPLIT, WHOLE

    rows = []
    for name in backbones:
        n = SIZES[name][0]
        paths = photo_jpegs(n)
        cnn = CNNFeatureTransformer(name, weights=None, random_state=0, cache_dir=None,
                                    runtime="tensorflow", batch_size=BATCH).fit()
        chooser = ExtractionEngine(cnn).runner.schemes
        for scheme in (WHOLE, SPLIT):  # traces both graphs
            chooser.chosen = scheme
            cnn.transform(paths[:2 * BATCH])
        times = {WHOLE: [], SPLIT: []}
        for r in range(rounds):
            for scheme in (WHOLE, SPLIT) if r % 2 == 0 else (SPLIT, WHOLE):
                chooser.chosen = scheme
                t = time.perf_counter()
                cnn.transform(paths)
                times[scheme].append(time.perf_counter() - t)
        ratio = statistics.median(a / b for a, b in zip(times[WHOLE], times[SPLIT]))
        rows.append([name, n, f"{n / statistics.median(times[WHOLE]):.1f}",
                     f"{n / statistics.median(times[SPLIT]):.1f}", f"**{ratio:.2f}**"])
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=list(BATCHES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transform", action="store_true",
                        help="time transform end to end, whole batches vs sub-batches")
    parser.add_argument("--schemes", nargs="*", default=list(SCHEMES), choices=list(SCHEMES))
    args = parser.parse_args(argv)
    if args.transform:
        rows = transform_rows(args.backbones, args.rounds)
        body = (f"`CNNFeatureTransformer.transform` of generated 500x375 JPEG photo patches, "
                f"cache off, batch {BATCH}, TensorFlow, the runner's scheme forced; "
                f"{args.rounds} interleaved rounds in one process, {os.cpu_count()} cores; "
                "images/s are medians, the ratio is the median of the per-round ratios.\n\n"
                + markdown_table(["backbone", "images", "whole batches", "4 sub-batches",
                                  "sub-batches / whole"], rows) + "\n")
        write_result("bench_tf_threads_transform",
                     "transform end to end: whole batches against sub-batches", body)
        return
    from skbottleneck.backbones import get_backbone

    ctx = mp.get_context("spawn")  # a fresh interpreter: TensorFlow not started yet
    rows, notes = [], []
    for name in args.backbones:
        spec = get_backbone(name)
        size = (spec.default_size, spec.default_size)
        images = decoded_photos(BATCHES[name] * BATCH, size)
        workers = {}
        schemes = ["today"] + [s for s in args.schemes if s != "today"]
        for scheme in schemes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, scheme, name, images))
            proc.start()
            workers[scheme] = (parent, proc)
        features = {s: w[0].recv() for s, w in workers.items()}
        times = {s: [] for s in schemes}
        for _ in range(args.rounds):
            for scheme, (conn, _) in workers.items():
                conn.send("round")
                times[scheme].append(conn.recv())
        for conn, proc in workers.values():
            conn.send("stop")
            proc.join()
        today, extra = features["today"]
        rate = {s: len(images) / statistics.median(t) for s, t in times.items()}
        for scheme in schemes:
            ratio = statistics.median(a / b for a, b in zip(times["today"], times[scheme]))
            feats = features[scheme][0]
            same = bool(np.array_equal(feats, today))
            rows.append([name, scheme, f"{rate[scheme]:.1f}", f"**{ratio:.2f}**",
                         "yes" if same else f"no ({max_rel(feats, today):.1e})"])
        notes.append(f"- {name}: today's graph on batches of 16 instead of 32: bit-identical "
                     f"{bool(np.array_equal(extra['half'], today))}, max relative difference "
                     f"{max_rel(extra['half'], today):.1e}; {len(images)} images of {size[0]} px "
                     f"per round")
    body = (
        f"CNN stage only (uint8 batches of {BATCH}, pre-decoded real photo patches, the "
        f"transformer's folded graph, random weights), {args.rounds} interleaved rounds, "
        f"{os.cpu_count()} cores. 'x today' is the median of the per-round ratios; "
        "'bit-identical' compares each scheme's features with today's.\n\n"
        + markdown_table(["backbone", "scheme", "images/s", "x today", "bit-identical"], rows)
        + "\n\n" + "\n".join(notes) + "\n"
    )
    write_result("bench_tf_threads", "TensorFlow thread schemes for the CNN stage", body)


if __name__ == "__main__":
    main()
