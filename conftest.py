"""Root pytest configuration: applies to the test suite and to the doctests of
the package's docstrings (both run by ``make test``).

Every run gets a private feature cache, so tests never touch the user's.
"""

import os
import tempfile

import pytest

os.environ["SKBOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="skb-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _doctest_tmp_dir(request, doctest_namespace, tmp_path, monkeypatch):
    """Docstring examples run in a fresh folder, available to them as ``tmp_dir``."""
    doctest_namespace["tmp_dir"] = tmp_path
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
