"""Root pytest configuration: applies to the test suite and to the doctests of
the package's docstrings (both run by ``make test``).

Every run gets a private feature cache, so tests never touch the user's.
"""

import importlib.util
import os
import tempfile

import pytest

# The examples of skbottleneck/distributed/ need the optional [dask] extra;
# tests/test_distributed.py skips itself (pytest.importorskip) without it.
collect_ignore = []
if importlib.util.find_spec("distributed") is None:
    collect_ignore.append("skbottleneck/distributed")

os.environ["SKBOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="skb-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _doctest_tmp_dir(request, doctest_namespace, tmp_path, monkeypatch):
    """Docstring examples run in a fresh folder, available to them as ``tmp_dir``."""
    doctest_namespace["tmp_dir"] = tmp_path
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
