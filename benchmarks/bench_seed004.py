"""Seed 004 at its real width: out-of-core heads on 100,352-dim ResNet50 features.

The scenario of the seed: ResNet50 features taken before pooling (7 x 7 x
2,048 = 100,352 per image) of N JPEG images, written to a FeatureStore, then
heads trained incrementally from the file. Measured, not simulated:

- images: :func:`skbottleneck.datasets.make_photo_folder` patches of two
  scikit-image photos (astronaut, chelsea) saved as JPEG (quality 90) at
  224 x 224, the two classes interleaved;
- features: ``CNNFeatureTransformer("resnet50", weights=None, random_state=0,
  pooling=None)``. Random weights: memory, time and store size do not depend
  on the weights (accuracy does, and is only compared between runs here);
- 10,000 images are extracted once into a float32 store; the float16 store
  and the 2,000 / 5,000-row stores are store-to-store copies of its first
  rows (the features extraction would write, cast to float16);
- heads: the seed's Keras 100352-256-16-2 (``KerasMLPClassifier``),
  ``IncrementalClassifier(SGDClassifier(loss="log_loss"))`` and
  ``IncrementalClassifier(MLPClassifier(hidden_layer_sizes=(256, 16)))``;
- every fit runs in a fresh subprocess that reports its peak RSS (VmHWM),
  its time per epoch and its held-out accuracy; the same head is fit with
  the features in RAM (``store.to_numpy()``) beside it;
- a cold-cache run drops the page cache (``echo 3 > /proc/sys/vm/drop_caches``,
  as root) before the fit.

    python benchmarks/bench_seed004.py prepare [--n-max 10000]
    python benchmarks/bench_seed004.py run [--sizes 2000 5000 10000] [--epochs 2]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, machine, peak_rss_mib, versions  # noqa: E402

DATA = Path(os.environ.get("SKBOTTLENECK_SEED004_DIR", WORK / "seed004"))
RESULT = Path(__file__).resolve().parent / "results" / "bench_seed004.txt"


def store_path(n, dtype):
    return DATA / f"resnet50_{n}_{dtype}.h5"


# --------------------------------------------------------------- preparing
def prepare(n_max, sizes):
    """Write the JPEGs, extract ``n_max`` of them once, copy the smaller stores."""
    from skbottleneck import CNNFeatureTransformer, FeatureStore
    from skbottleneck.datasets import load_image_folder, make_photo_folder

    DATA.mkdir(parents=True, exist_ok=True)
    folder = DATA / "jpeg224"
    if not (folder / "chelsea" / f"chelsea_{n_max // 2 - 1:03d}.jpg").exists():
        t = time.perf_counter()
        make_photo_folder(folder, classes=["astronaut", "chelsea"], n_per_class=n_max // 2,
                          size=224, format="jpeg", random_state=0, exist_ok=True)
        print(f"wrote {n_max} JPEGs in {time.perf_counter() - t:.0f} s", flush=True)
    paths, labels = load_image_folder(folder)
    order = np.random.RandomState(0).permutation(len(paths))[:n_max]  # classes interleaved
    paths, labels = [paths[i] for i in order], labels[order]
    full = store_path(n_max, "float32")
    stats = {}
    if not full.exists():
        cnn = CNNFeatureTransformer("resnet50", weights=None, random_state=0, pooling=None,
                                    cache_dir=None, verbose=1)
        t = time.perf_counter()
        cnn.extract(paths, labels, store=full).features.close()
        stats["extract_s"] = time.perf_counter() - t
        stats["extract_rss_mib"] = peak_rss_mib()
        print(f"extracted {n_max} images in {stats['extract_s']:.0f} s "
              f"({n_max / stats['extract_s']:.1f} img/s), peak RSS {stats['extract_rss_mib']:.0f} MiB",
              flush=True)
        (DATA / "extract.json").write_text(json.dumps(stats))
    with FeatureStore(full) as src:
        for n in sorted(set(sizes) | {n_max}):
            for dtype in ("float32", "float16"):
                out = store_path(n, dtype)
                if out.exists() or (n == n_max and dtype == "float32"):
                    continue
                copy_store(src, out, n, dtype)
                print(f"copied {out.name}", flush=True)


def copy_store(src, out, n, dtype, rows_per_write=256):
    """The first ``n`` rows of ``src`` into a new store of ``dtype``, a few rows at a time."""
    from skbottleneck.store import StoreWriter

    writer = StoreWriter(out, paths=src.paths[:n], labels=src.labels[:n],
                         n_features=src.n_features, dtype=dtype,
                         overwrite=True)
    for start in range(0, n, rows_per_write):
        rows = np.arange(start, min(n, start + rows_per_write))
        writer.write_rows(rows, src.read_rows(rows)[0])
    writer.finalize().close()


HEADS = ("keras", "sgd", "mlp")
#: In priority order: what one run measures (head, n, dtype, mode, epochs, cold cache).
#: MLPClassifier is slow here (~100 s an epoch of 1,800 rows on 2 shared cores): fewer runs
#: (its 2,000-row store run, 2 epochs, was measured first: run it with "fit mlp 2000 ...").
STAGES = {
    "base": [(h, n, "float32", "store", 1, False) for n in (2000, 5000) for h in ("keras", "sgd")],
    "ratio": [(h, 2000, dt, m, 2, False) for h in ("keras", "sgd")
              for dt, m in (("float32", "store"), ("float32", "ram"), ("float16", "store"))],
    "flat": [(h, 10000, "float32", "store", 1, False) for h in ("keras", "sgd")],
    "cold": [("sgd", 10000, "float32", "store", 1, True),
             ("sgd", 10000, "float32", "store", 1, False)],
    "mid": [(h, 5000, "float32", "store", 1, False) for h in ("keras", "sgd")],
    "mlp": [("mlp", 2000, "float32", "ram", 1, False),
            ("mlp", 5000, "float32", "store", 1, False)],
    "mlp-flat": [("mlp", 10000, "float32", "store", 1, False)],
    "mlp-ratio": [("mlp", 2000, "float32", "store", 1, False),
                  ("mlp", 2000, "float32", "ram", 1, False)],
}


# ------------------------------------------------------------------ one fit
def make_head(name, epochs, verbose=1):
    from sklearn.linear_model import SGDClassifier
    from sklearn.neural_network import MLPClassifier

    from skbottleneck import IncrementalClassifier, KerasMLPClassifier

    if name == "keras":  # the seed's 100352-256-16-2
        return KerasMLPClassifier(hidden_layer_sizes=(256, 16), epochs=epochs, batch_size=128,
                                  random_state=0, verbose=verbose)
    if name == "sgd":
        return IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=0),
                                     epochs=epochs, random_state=0, verbose=verbose)
    return IncrementalClassifier(MLPClassifier(hidden_layer_sizes=(256, 16), random_state=0),
                                 epochs=epochs, random_state=0, verbose=verbose)


def fit_once(head_name, n, dtype, mode, epochs):
    """Fit one head in this (fresh) process; print a JSON line of what it cost."""
    import contextlib
    import io
    import re

    from skbottleneck import FeatureStore
    from skbottleneck.store import StoreSubset

    store = FeatureStore(store_path(n, dtype))
    n_test = n // 10  # the last tenth of the rows is the test set
    train_rows, test_rows = np.arange(n - n_test), np.arange(n - n_test, n)
    head = make_head(head_name, epochs)
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err):
        if mode == "ram":
            X, y = store.read_rows(train_rows, dtype=np.float32)
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            head.fit(X, y)
            del X
        else:
            load_s = 0.0
            head.fit(StoreSubset(store, train_rows))
    fit_s = time.perf_counter() - t
    peak = peak_rss_mib()  # of the fit (scoring reads the test rows chunk by chunk too)
    epoch_s = [float(m) for m in re.findall(r"rows in ([0-9.]+) s", err.getvalue())]
    accuracy = float(head.score(StoreSubset(store, test_rows)))
    print(json.dumps(dict(head=head_name, n=n, dtype=dtype, mode=mode, epochs=epochs,
                          peak_rss_mib=peak, fit_s=fit_s, load_s=load_s,
                          epoch_s=epoch_s, accuracy=accuracy,
                          store_mib=os.path.getsize(store_path(n, dtype)) / 2**20)))


def drop_caches():
    """Drop the page cache (root only): True if it was dropped."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as e:
        print(f"cannot drop the page cache: {e}", file=sys.stderr)
        return False


def run(plan, out_jsonl):
    """Each ``(head, n, dtype, mode, epochs, cold)`` of ``plan`` in a fresh process."""
    for head, n, dtype, mode, epochs, cold in plan:
        dropped = drop_caches() if cold else False
        cmd = [sys.executable, __file__, "fit", head, str(n), dtype, mode, str(epochs)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            print(f"FAILED {cmd}: {proc.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(lines[-1])
        row.update(cold=bool(cold), cache_dropped=dropped, wall_s=time.perf_counter() - t)
        with open(out_jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name"))
    except (OSError, StopIteration):
        return machine()


def _slope(points):
    """Least-squares ``(a, b)`` of ``value = a + b * n`` (``b = 0`` from one point)."""
    n = np.array([p[0] for p in points], float)
    v = np.array([p[1] for p in points], float)
    if len(set(n.tolist())) < 2:
        return float(v.mean()), 0.0
    b, a = np.polyfit(n, v, 1)
    return float(a), float(b)


def report(jsonl):
    """Write :data:`RESULT` from the runs recorded in ``jsonl``."""
    import datetime

    rows = [json.loads(ln) for ln in jsonl.read_text().splitlines() if ln.strip()]
    warm = [r for r in rows if not r["cold"]]
    extract = json.loads((DATA / "extract.json").read_text()) if (DATA / "extract.json").exists() else {}
    limit_mib = 1.5e9 / 2**20
    out = [
        "bench_seed004: out-of-core heads on 100,352-dim ResNet50 features (seed 004)",
        f"date: {datetime.date.today().isoformat()}",
        f"machine: {_cpu_model()}, nproc {os.cpu_count()}, {machine().split(', ', 2)[-1]}",
        f"versions: {versions('numpy', 'scikit-learn', 'tensorflow', 'keras', 'h5py')}",
        "shared machine (other jobs on its 2 cores): time ratios are measured side by side;",
        "peak RSS does not depend on the load.",
        "",
        "features: ResNet50, weights=None (random, seeded; memory, time and store size do not",
        "depend on the weights), pooling=None: 7 x 7 x 2048 = 100,352 per image, of 224 x 224",
        "JPEGs (make_photo_folder patches of astronaut / chelsea, quality 90, classes interleaved).",
    ]
    if extract:
        out.append(f"extraction of 10,000 images into a float32 store: {extract['extract_s']:.0f} s "
                   f"({10000 / extract['extract_s']:.1f} img/s), peak RSS "
                   f"{extract['extract_rss_mib']:.0f} MiB; the float16 and 2,000 / 5,000-row stores "
                   "are store-to-store copies of its first rows.")
    out += [
        "heads: keras = KerasMLPClassifier((256, 16)) 100352-256-16-2, batch 128, Adam;",
        "sgd = IncrementalClassifier(SGDClassifier(loss='log_loss')); mlp =",
        "IncrementalClassifier(MLPClassifier((256, 16))); all with the default chunk_size='auto'",
        "(64 MiB: 167 rows, 128 for keras). Each fit in a fresh process; train on the first 90%",
        "of the rows, accuracy on the last 10%. mode store: fit(StoreSubset(store, train rows));",
        "mode ram: the same rows read into a float32 array first (load time not in fit_s).",
        "epoch_s: the epochs' own time (IncrementalClassifier's fit_s also has its scaler pass).",
        "",
        f"{'head':6} {'N':>6} {'dtype':8} {'mode':6} {'cache':5} {'epochs':>6} {'RSS MiB':>8} "
        f"{'epoch s':>8} {'fit s':>7} {'acc':>6} {'store MiB':>9}",
    ]
    notes = []
    for r in rows:
        epoch = np.mean(r["epoch_s"]) if r["epoch_s"] else float("nan")
        if r.get("note"):
            notes.append(f"({len(notes) + 1}) {r['head']} N={r['n']}: {r['note']}")
        out.append(f"{'(%d) ' % len(notes) if r.get('note') else ''}"
                   f"{r['head']:6} {r['n']:>6} {r['dtype']:8} {r['mode']:6} "
                   f"{'cold' if r['cold'] else 'warm':5} {r['epochs']:>6} {r['peak_rss_mib']:>8.0f} "
                   f"{epoch:>8.1f} {r['fit_s']:>7.1f} {r['accuracy']:>6.3f} {r['store_mib']:>9.0f}")
    out += notes
    if any(r["cold"] and not r["cache_dropped"] for r in rows):
        out.append("cold runs: the page cache could NOT be dropped (not root?): they are warm.")

    def find(head, n, dtype="float32", mode="store", cold=False):
        return [r for r in rows if (r["head"], r["n"], r["dtype"], r["mode"], r["cold"])
                == (head, n, dtype, mode, cold)]

    out += ["", "targets"]
    store_runs = [r for r in warm if r["mode"] == "store"]
    if store_runs:
        worst = max(store_runs, key=lambda r: r["peak_rss_mib"])
        out.append(f"- peak RSS of every out-of-core fit <= 1.5 GB ({limit_mib:.0f} MiB): worst "
                   f"{worst['peak_rss_mib']:.0f} MiB ({worst['head']}, N={worst['n']}, "
                   f"{worst['dtype']}) -> {'met' if worst['peak_rss_mib'] <= limit_mib else 'NOT met'}")
    for head in HEADS:
        small, big = find(head, 2000), find(head, 10000)
        if small and big:
            ratio = big[-1]["peak_rss_mib"] / small[-1]["peak_rss_mib"]
            out.append(f"- {head}: RSS(10,000) / RSS(2,000) = {big[-1]['peak_rss_mib']:.0f} / "
                       f"{small[-1]['peak_rss_mib']:.0f} = {ratio:.3f} (<= 1.10: "
                       f"{'met' if ratio <= 1.10 else 'NOT met'})")
    for head in HEADS:
        for n in (2000, 10000):
            disk, ram = find(head, n), find(head, n, mode="ram")
            if disk and ram and disk[-1]["epoch_s"] and ram[-1]["epoch_s"]:
                ratio = np.mean(disk[-1]["epoch_s"]) / np.mean(ram[-1]["epoch_s"])
                out.append(f"- {head} N={n}: epoch from the store / in RAM = "
                           f"{np.mean(disk[-1]['epoch_s']):.1f} / {np.mean(ram[-1]['epoch_s']):.1f} s "
                           f"= {ratio:.2f} (<= 1.3: {'met' if ratio <= 1.3 else 'NOT met'}); "
                           f"accuracy {disk[-1]['accuracy']:.3f} vs {ram[-1]['accuracy']:.3f}")
    for head in HEADS:
        a, b = find(head, 2000), find(head, 2000, dtype="float16")
        if a and b:
            out.append(f"- {head} N=2000: accuracy float32 store {a[-1]['accuracy']:.3f}, float16 "
                       f"store {b[-1]['accuracy']:.3f}; RSS {a[-1]['peak_rss_mib']:.0f} vs "
                       f"{b[-1]['peak_rss_mib']:.0f} MiB; epoch {np.mean(a[-1]['epoch_s']):.1f} vs "
                       f"{np.mean(b[-1]['epoch_s']):.1f} s; store {a[-1]['store_mib']:.0f} vs "
                       f"{b[-1]['store_mib']:.0f} MiB")
    cold, hot = find("sgd", 10000, cold=True), find("sgd", 10000)
    if cold and hot:
        out.append(f"- cold page cache (drop_caches before the fit; the store is read from disk "
                   f"in the scaler pass, then cached): sgd N=10,000 fit {cold[-1]['fit_s']:.1f} s "
                   f"cold vs {hot[-1]['fit_s']:.1f} s warm (epoch {np.mean(cold[-1]['epoch_s']):.1f} "
                   f"vs {np.mean(hot[-1]['epoch_s']):.1f} s)")
    out += ["", "extrapolation to the seed's 50,000 images (linear fits of the measured points "
            "against N, store runs, float32; an extrapolation, not a measurement)"]
    for head in HEADS:
        pts = [(r["n"], np.mean(r["epoch_s"])) for r in store_runs
               if r["head"] == head and r["dtype"] == "float32" and r["epoch_s"]]
        rss = [(r["n"], r["peak_rss_mib"]) for r in store_runs
               if r["head"] == head and r["dtype"] == "float32"]
        if len({p[0] for p in pts}) >= 2:
            a, b = _slope(pts)
            ra, rb = _slope(rss)
            out.append(f"- {head}: epoch ~ {a + b * 45000:.0f} s for 45,000 training rows "
                       f"({b * 1000:.2f} s per 1,000 rows); peak RSS ~ {ra + rb * 50000:.0f} MiB "
                       f"({rb * 1000:.1f} MiB per 1,000 rows, measured "
                       f"{', '.join(f'{int(n)}: {v:.0f}' for n, v in sorted(rss))})")
    per_row = 100352 * 4 / 2**30
    out.append(f"- store on disk: {50000 * per_row:.1f} GiB float32, {50000 * per_row / 2:.1f} "
               "GiB float16 (measured: size is linear in N, see the table).")
    RESULT.write_text("\n".join(out) + "\n")
    print("\n".join(out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--n-max", type=int, default=10000)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    p = sub.add_parser("fit")
    p.add_argument("head", choices=["keras", "sgd", "mlp"])
    p.add_argument("n", type=int)
    p.add_argument("dtype", choices=["float32", "float16"])
    p.add_argument("mode", choices=["store", "ram"])
    p.add_argument("epochs", type=int)
    p = sub.add_parser("run")
    p.add_argument("--stage", nargs="+", default=["all"])
    p.add_argument("--out", default=str(RESULT.with_suffix(".jsonl")))
    sub.add_parser("report")
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.n_max, args.sizes)
    elif args.cmd == "fit":
        fit_once(args.head, args.n, args.dtype, args.mode, args.epochs)
    elif args.cmd == "run":
        plan = []
        for stage in args.stage:
            plan += STAGES[stage] if stage != "all" else sum(STAGES.values(), [])
        run(plan, args.out)
    else:
        report(Path(RESULT.with_suffix(".jsonl")))


if __name__ == "__main__":
    main()
