"""``make demo`` (examples/demo.py), run as a user runs it: a real subprocess, real photos,
real EfficientNet-Lite0 ImageNet weights (shipped with the package), real feature cache.

Its ``--quick`` run (the full task's 84 training patches, 12 test patches per photo
instead of 40) must show what the demo promises: a held-out score that is not a
memorised 1.000, above the raw-pixel baseline of the same head, a report with a
confusion-matrix PNG, and none of TensorFlow's C++ start-up lines.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
TF_NOISE = ("oneDNN", "cuInit", "absl::InitializeLog", "cpu_feature_guard", "cudart_stub")


def _demo_module():
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_scores_held_out_regions_above_the_raw_pixel_baseline(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "SKBOTTLENECK_TF_LOGS")}
    result = subprocess.run([sys.executable, str(DEMO), "--root", str(tmp_path), "--quick"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    scores = _demo_module().parse_scores(result.stdout)
    assert set(scores) == {"raw pixels", "EfficientNet-Lite0 features"}, result.stdout
    cnn, raw = scores["EfficientNet-Lite0 features"], scores["raw pixels"]
    # held-out regions: not the memorised 1.000 of overlapping patches, and the CNN
    # buys a clear margin over the same head on pixels
    assert 0.5 < cnn < 1.0, result.stdout
    assert cnn >= raw + 0.1, result.stdout
    assert "84 training patches" in result.stdout and "84 test patches" in result.stdout
    png = tmp_path / "report" / "confusion_matrix.png"
    assert f"confusion matrix: {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert "weighted avg" in result.stdout  # the classification report
    noise = [line for line in output.splitlines() if any(n in line for n in TF_NOISE)]
    assert not noise, noise


def test_parse_scores_reads_the_printed_table():
    text = ("accuracy on 280 held-out patches, same head (StandardScaler + ...):\n"
            "  raw pixels                   0.675\n"
            "  EfficientNet-Lite0 features  0.886\n\nclassification report ...\n  x  0.123\n")
    assert _demo_module().parse_scores(text) == {"raw pixels": 0.675,
                                                 "EfficientNet-Lite0 features": 0.886}
