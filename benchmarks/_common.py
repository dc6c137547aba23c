"""What every benchmark script shares: machine description, timing, result files."""

import datetime
import os
import platform
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "_work"  # generated inputs (git-ignored)


def machine():
    """One line describing the CPU, cores and memory of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def versions(*names):
    out = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def peak_rss_mib():
    """Peak resident memory of this process in MiB.

    Linux: ``VmHWM`` of the current address space, which, unlike
    ``ru_maxrss``, does not inherit the peak of the process that forked us.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat=3):
    """Median wall time of ``repeat`` calls of ``fn`` (and its last result)."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name, title, body, libs=("tensorflow", "keras", "numpy", "scikit-learn", "h5py", "pillow")):
    """Print ``body`` and write it to ``results/<name>.md`` with date, machine and versions."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = (
        f"# {title}\n\n"
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}\n"
        f"- machine: {machine()}\n"
        f"- versions: {versions(*libs)}\n"
        f"- command: `{' '.join([Path(sys.executable).name] + sys.argv)}`\n\n"
        f"{body}\n"
    )
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text
