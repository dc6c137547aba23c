"""Core time per decoded, resized image: today's load_image against the options.

Issue #14, part 4. Real JPEGs (scikit-image's astronaut photo resized with
Lanczos to 500x375, 1024x768, 2000x1500 and saved at quality 90, 4:2:0) and a PNG,
decoded to 224 (and 160, 96) px squares. Each variant runs on the same
bytes, one thread, interleaved rounds; core time is ``time.thread_time``.
Pixel differences are in gray levels against today's ``load_image`` and
against a *reference* (full-quality Pillow decode, Lanczos resize of the
full image), so each difference can be set against what a resize changes.

simplejpeg and PyTurboJPEG are not dependencies: ``pip install simplejpeg
PyTurboJPEG`` (PyTurboJPEG also needs the system's libturbojpeg; it is
skipped, and the output says so, when that cannot be found).

Run: ``python benchmarks/bench_decode.py [--rounds N] [--turbojpeg-lib PATH]``.
"""

import argparse
import datetime
import io
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, versions  # noqa: E402

from skbottleneck import images  # noqa: E402

BIL = Image.Resampling.BILINEAR


def make_inputs():
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    out = {}
    for w, h in [(500, 375), (1024, 768), (2000, 1500)]:
        buf = io.BytesIO()
        photo.resize((w, h), Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
        out[f"jpeg {w}x{h}"] = buf.getvalue()
    buf = io.BytesIO()
    photo.resize((500, 375), Image.Resampling.LANCZOS).save(buf, "PNG")
    out["png 500x375"] = buf.getvalue()
    return out


def today(data, size):
    # load_image as it was before this change: Pillow decode (draft with
    # margin 2), RGB, bilinear resize
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG":
            img.draft("RGB", (size * 2, size * 2))
        img.load()
        return np.asarray(img.convert("RGB").resize((size, size), BIL))


def new(data, size):
    return images.load_image("x", size, data=data)


def reference(data, size):
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))


def pil_nodraft(data, size):
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB").resize((size, size), BIL))


def pil_draft1(data, size):  # Pillow's own rule: decoded image just >= target
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))
        return np.asarray(img.convert("RGB").resize((size, size), BIL))


def pil_gap(data, size):  # draft margin 2 + resize(reducing_gap=2): reduce() first
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size * 2, size * 2))
        return np.asarray(img.convert("RGB").resize((size, size), BIL, reducing_gap=2.0))


def pil_ycbcr(data, size):  # decode to YCbCr (no colour conversion), resize, convert small
    with Image.open(io.BytesIO(data)) as img:
        img.draft("YCbCr", (size * 2, size * 2))
        img.load()
        small = img.resize((size, size), BIL)
        return np.asarray(small.convert("RGB"))


def _sj(data, size, **kw):
    import simplejpeg

    h, w = simplejpeg.decode_jpeg_header(data)[:2]
    arr = simplejpeg.decode_jpeg(data, "RGB", **kw)
    return np.asarray(Image.fromarray(arr).resize((size, size), BIL))


def sj_full(data, size):
    return _sj(data, size)


def sj_fast(data, size):
    return _sj(data, size, fastdct=True, fastupsample=True)


def sj_scaled(data, size):  # scaled DCT, decoded image >= 2x target (as the draft)
    return _sj(data, size, min_height=2 * size, min_width=2 * size)


def sj_scaled_fast(data, size):
    return _sj(data, size, min_height=2 * size, min_width=2 * size,
               fastdct=True, fastupsample=True)


def sj_scaled_m1(data, size):  # scaled DCT (M/8 steps), decoded image just >= target
    return _sj(data, size, min_height=size, min_width=size)


def pil_draft15(data, size):  # draft margin 1.5
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size * 3 // 2, size * 3 // 2))
        return np.asarray(img.convert("RGB").resize((size, size), BIL))


def turbo_factory(lib):
    from turbojpeg import TJPF_RGB, TurboJPEG

    tj = TurboJPEG(lib)

    def tj_scaled(data, size):
        w, h = tj.decode_header(data)[:2]
        s = 1
        while s < 8 and w // (2 * s) >= 2 * size and h // (2 * s) >= 2 * size:
            s *= 2
        arr = tj.decode(data, pixel_format=TJPF_RGB, scaling_factor=(1, s))
        return np.asarray(Image.fromarray(arr).resize((size, size), BIL))

    return tj_scaled


def steps(data, size, rounds):
    """Core ms per step of today's path on one file."""
    import simplejpeg

    times = {k: [] for k in ("open+header", "decode (load)", "resize", "to-array",
                             "simplejpeg decode only", "read_image_file")}
    path = RESULTS.parent / "_work" / "bench_decode.jpg"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    for _ in range(rounds):
        t0 = time.thread_time()
        images.read_image_file(path)
        t1 = time.thread_time()
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (2 * size, 2 * size))
        t2 = time.thread_time()
        img.load()
        t3 = time.thread_time()
        small = img.resize((size, size), BIL)
        t4 = time.thread_time()
        np.array(small, dtype=np.uint8)
        t5 = time.thread_time()
        simplejpeg.decode_jpeg(data, "RGB")
        t6 = time.thread_time()
        for k, v in zip(times, (t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t1 - t0)):
            times[k].append(v)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def _decode_many(data, size, n):
    for _ in range(n):
        new(data, size)
    return n


def pools(data, size, n):
    """Images/s with one thread, two threads (the decode pool's kind) and two processes."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    out = {}
    t = time.perf_counter()
    _decode_many(data, size, n)
    out["1 thread"] = n / (time.perf_counter() - t)
    for name, kind in [("2 threads", ThreadPoolExecutor), ("2 processes", ProcessPoolExecutor)]:
        with kind(2) as pool:
            list(pool.map(_decode_many, [data] * 2, [size] * 2, [1] * 2))  # start-up
            t = time.perf_counter()
            list(pool.map(_decode_many, [data] * 8, [size] * 8, [n // 8] * 8))
            out[name] = n / (time.perf_counter() - t)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--turbojpeg-lib", default=None)
    args = p.parse_args()
    inputs = make_inputs()
    variants = {"today (load_image before)": today, "load_image now": new,
                "pillow, no draft": pil_nodraft, "pillow draft margin 1.5": pil_draft15,
                "pillow draft margin 1": pil_draft1,
                "pillow draft + reducing_gap=2": pil_gap, "pillow YCbCr draft": pil_ycbcr,
                "simplejpeg": sj_full, "simplejpeg fast": sj_fast,
                "simplejpeg scaled": sj_scaled, "simplejpeg scaled fast": sj_scaled_fast,
                "simplejpeg scaled margin 1": sj_scaled_m1}
    turbo_note = ""
    try:
        variants["PyTurboJPEG scaled"] = turbo_factory(args.turbojpeg_lib)
    except Exception as e:  # libturbojpeg not installed
        turbo_note = f"PyTurboJPEG skipped: {e}"
    lines = [f"# bench_decode ({datetime.date.today()})", "",
             f"Machine: {machine()} (processor: {platform.processor() or '?'})",
             f"Versions: {versions('pillow', 'numpy', 'simplejpeg', 'PyTurboJPEG')}",
             f"Rounds: {args.rounds}, interleaved, one thread, core time = time.thread_time, median.",
             "diff: mean / max absolute difference in gray levels.", ""]
    if turbo_note:
        lines += [turbo_note, ""]
    for size in (224, 160, 96):
        lines += [f"## target {size}x{size}", "",
                  "| input | variant | core ms/img | x today | diff vs today | diff vs reference |",
                  "|---|---|---|---|---|---|"]
        for name, data in inputs.items():
            vs = {k: f for k, f in variants.items()
                  if name.startswith("jpeg") or not k.startswith(("simplejpeg", "PyTurbo"))}
            t = {k: [] for k in vs}
            for _ in range(args.rounds):
                for k, f in vs.items():
                    t0 = time.thread_time()
                    f(data, size)
                    t[k].append(time.thread_time() - t0)
            base = today(data, size).astype(int)
            ref = reference(data, size).astype(int)
            med0 = statistics.median(t["today (load_image before)"])
            for k, f in vs.items():
                out = f(data, size).astype(int)
                med = statistics.median(t[k])
                d0, d1 = np.abs(out - base), np.abs(out - ref)
                lines.append(f"| {name} | {k} | {1000 * med:.2f} | {med / med0:.2f} | "
                             f"{d0.mean():.2f} / {d0.max()} | {d1.mean():.2f} / {d1.max()} |")
            print("\n".join(lines[-len(vs):]), flush=True)
        lines.append("")
    lines += ["## budget per step of the Pillow path, jpeg 500x375 -> 224 (core ms, median)", ""]
    for k, v in steps(inputs["jpeg 500x375"], 224, args.rounds).items():
        lines.append(f"- {k}: {v:.3f}")
    lines += ["", "## pools: wall time for 400 decodes of jpeg 500x375 -> 224 (2 cores)", ""]
    for k, v in pools(inputs["jpeg 500x375"], 224, 400).items():
        lines.append(f"- {k}: {v:.0f} images/s")
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / "bench_decode.md").write_text(text)


if __name__ == "__main__":
    main()
