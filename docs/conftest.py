"""Fixtures for the doctests of the documentation pages (``make -C docs doctest``).

Each page runs in a fresh temporary folder (its relative paths, such as
``my_images/`` or ``features.h5``, land there) with its own feature cache.
"""

import os
import tempfile

import pytest

os.environ["SKBOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="skb-docs-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _page_in_tmp_dir(doctest_namespace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(tmp_path / "cache"))
    doctest_namespace["tmp_dir"] = tmp_path
