"""Shared fixtures: real image folders, a private cache, doctest namespace.

TensorFlow is imported once per test session (it costs seconds); tests that
need a model share small ones (32-48 px inputs, seeded random weights).
"""

import os
import tempfile

import pytest

# Keep every test's cache away from the user's real cache folder. Set before
# any skbottleneck module reads it.
_SESSION_CACHE = tempfile.mkdtemp(prefix="skb-test-cache-")
os.environ["SKBOTTLENECK_CACHE_DIR"] = _SESSION_CACHE
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """A class-per-subfolder folder of real photo patches (JPEG, 48 px)."""
    from skbottleneck.datasets import make_photo_folder

    return make_photo_folder(tmp_path_factory.mktemp("photos"), n_per_class=8,
                             size=(48, 48), random_state=0)


@pytest.fixture(scope="session")
def photo_paths(photo_folder):
    from skbottleneck.datasets import load_image_folder

    return load_image_folder(photo_folder)


@pytest.fixture(autouse=True)
def _doctest_tmp_dir(doctest_namespace, tmp_path):
    doctest_namespace["tmp_dir"] = tmp_path
