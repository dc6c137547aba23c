"""Shared fixtures: real image folders.

TensorFlow is imported once per test session (it costs seconds); tests that
need a model share small ones (32-48 px inputs, seeded random weights).
"""

import pytest

# The private cache folder and the doctest namespace are set in ../conftest.py.


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
