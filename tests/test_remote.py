"""Images from URLs and object storage, against real servers on 127.0.0.1:
moto's S3 server and an ``http.server`` that can drop connections mid-read."""

import os
import re

import numpy as np
import pytest

from _servers import http_server, s3_filesystem, s3_server
from skbottleneck import CNNFeatureTransformer, ImageError
from skbottleneck.datasets import load_image_folder, make_photo_folder
from skbottleneck.remote import read_image_bytes

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_photo_folder(tmp_path_factory.mktemp("remote"), n_per_class=3, size=(40, 40),
                             random_state=1)


@pytest.fixture(scope="module")
def s3(folder):
    """The moto endpoint, with ``folder`` uploaded to s3://photos/train/."""
    with s3_server() as endpoint:
        fs = s3_filesystem(endpoint)
        fs.mkdir("photos")
        fs.put(os.fspath(folder), "photos/train", recursive=True)
        yield endpoint


@pytest.fixture(scope="module")
def http(folder):
    with http_server(folder) as url:
        yield url


def _cnn(**kw):
    return CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0, input_size=32,
                                 batch_size=16, runtime="tensorflow", **kw)


def test_remote_folder_lists_like_the_local_one(folder, s3):
    local_paths, local_labels = load_image_folder(folder)
    paths, labels = load_image_folder("s3://photos/train/",
                                      storage_options={"client_kwargs": {"endpoint_url": s3}})
    assert labels.tolist() == local_labels.tolist()
    assert [p.split("/train/")[1] for p in paths] == [
        os.path.relpath(p, folder) for p in local_paths]
    assert all(p.startswith("s3://photos/train/") for p in paths)


def test_features_from_s3_and_http_equal_the_local_files_and_share_their_cache(
        folder, s3, http, tmp_path):
    local, _ = load_image_folder(folder)
    s3_paths = [f"s3://photos/train/{os.path.relpath(p, folder)}" for p in local]
    http_paths = [f"{http}/{os.path.relpath(p, folder)}" for p in local]
    options = {"client_kwargs": {"endpoint_url": s3}}
    expected = _cnn(cache_dir=None).fit(local).transform(local)

    cnn = _cnn(cache_dir=tmp_path, storage_options=options).fit()
    first = cnn.extract(s3_paths)
    np.testing.assert_array_equal(first.features, expected)  # same batch: same bytes
    assert first.stats["n_extracted"] == len(local) and first.stats["read_s"] > 0

    again = cnn.extract(s3_paths)  # the bytes are read and hashed again, the CNN not run
    assert again.stats["n_cached"] == len(local) and again.stats["n_extracted"] == 0
    np.testing.assert_array_equal(again.features, expected)
    for paths in (http_paths, list(local)):  # same content key as the S3 objects
        res = _cnn(cache_dir=tmp_path).fit().extract(paths)
        assert res.stats["n_cached"] == len(local), paths[0]
        np.testing.assert_array_equal(res.features, expected)


def test_the_environment_gives_the_endpoint(folder, s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    rel = os.path.relpath(load_image_folder(folder)[0][0], folder)
    data, st = read_image_bytes(f"s3://photos/train/{rel}")
    assert st is None and data == (folder / rel).read_bytes()


def test_bad_remote_images_are_named_and_skipped(folder, s3, http, tmp_path):
    local, _ = load_image_folder(folder)
    rel = [os.path.relpath(p, folder) for p in local[:3]]
    good = [f"{http}/{rel[0]}", f"{http}/flaky/{rel[1]}"]  # flaky: dropped once, retried
    bad = {
        f"s3://photos/train/missing.jpg": "no such object",
        f"{http}/forbidden/{rel[0]}": "access denied (HTTP 403)",
        f"{http}/drop/{rel[2]}": "truncated read",
    }
    options = {"s3": {"client_kwargs": {"endpoint_url": s3}}}  # one per protocol
    for url, reason in bad.items():
        with pytest.raises(ImageError, match=re.escape(reason)) as info:
            _cnn(cache_dir=None, storage_options=options).fit().transform([good[0], url])
        assert info.value.path == url

    cnn = _cnn(cache_dir=tmp_path, storage_options=options, on_error="skip").fit()
    with pytest.warns(UserWarning):
        res = cnn.extract(good + list(bad))
    assert res.kept.tolist() == [0, 1]
    assert [p for p, _ in res.failed] == list(bad)
    assert all(reason in why for (_, why), reason in zip(res.failed, bad.values()))
    np.testing.assert_array_equal(
        res.features, _cnn(cache_dir=None).fit().transform(list(local[:2])))


def test_similarity_queries_and_augmented_views_read_urls(folder, s3, tmp_path, monkeypatch):
    """find_similar's query images and AugmentedClassifier's images may be URLs:
    the same answers as for the local files of the same bytes."""
    from sklearn.linear_model import LogisticRegression

    from skbottleneck import AugmentedClassifier, find_similar

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    local, labels = load_image_folder(folder)
    urls = [f"s3://photos/train/{os.path.relpath(p, folder)}" for p in local]
    store = _cnn(cache_dir=tmp_path).extract(local, labels, store=tmp_path / "f.h5").features
    by_url = find_similar(store, urls[:2], k=3, transformer=_cnn(cache_dir=tmp_path))
    by_file = find_similar(store, local[:2], k=3, transformer=_cnn(cache_dir=tmp_path))
    assert by_url.indices.tolist() == by_file.indices.tolist()
    np.testing.assert_allclose(by_url.distances, by_file.distances, atol=1e-6)

    def views(paths):
        model = AugmentedClassifier(_cnn(cache_dir=tmp_path), LogisticRegression(max_iter=200),
                                    augment=2, tta=True)
        return model.fit(paths, labels).predict_proba(paths)

    np.testing.assert_allclose(views(urls), views(list(local)), atol=1e-6)
