"""The approximate index beside a store (:func:`skbottleneck.build_index`, ``skbottleneck index``).

Real HDF5 stores, real faiss indexes; real photos through the real
EfficientNet-Lite0 (ImageNet weights, 64 px) for the equality with the
exact search, a clustered synthetic store of 6,000 rows for recall when the
index proposes far fewer candidates than the store holds.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from skbottleneck import CNNFeatureTransformer, FeatureStore, build_index, find_similar
from skbottleneck.datasets import PHOTO_NAMES
from skbottleneck.similarity import StaleIndexError, index_path, load_index
from skbottleneck.store import StoreWriter

pytest.importorskip("faiss")


def _photo(name):
    import skimage.data

    photo = np.asarray(getattr(skimage.data, name)())
    return Image.fromarray(photo[..., :3] if photo.ndim == 3 else np.stack([photo] * 3, axis=-1))


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory):
    """28 real pictures: each photo whole, mirrored, and two crops; and 7 query crops."""
    root = tmp_path_factory.mktemp("index_photos")
    paths, labels, queries = [], [], []
    for name in PHOTO_NAMES:
        image = _photo(name)
        w, h = image.size
        variants = [image, ImageOps.mirror(image), image.crop((0, 0, w // 2, h // 2)),
                    image.crop((w // 2, h // 2, w, h))]
        for i, variant in enumerate(variants):
            paths.append(str(root / f"{name}_{i}.jpg"))
            labels.append(name)
            variant.resize((64, 64)).save(paths[-1], quality=90)
        queries.append(str(root / f"{name}_query.jpg"))
        image.crop((w // 8, h // 8, 7 * w // 8, 7 * h // 8)).resize((64, 64)).save(queries[-1])
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=64)
    cnn.extract(paths, labels, store=root / "photos.h5")
    return root / "photos.h5", np.asarray(queries)


def test_the_index_top10_equals_the_exact_search_on_real_photos(photo_store):
    path, queries = photo_store
    exact = find_similar(path, queries, k=10, exact=True)
    assert exact.method == "in_memory"
    # half the lists searched: the index proposes about half the pictures
    build_index(path, factory="IVF4,PQ16x4fs", nprobe=2)
    half = find_similar(path, queries, k=10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(half.indices, exact.indices)])
    print(f"recall@10 of the index on real photos, 2 of 4 lists searched: {recall:.3f}")
    assert recall >= 0.8
    assert half.indices[:, 0].tolist() == exact.indices[:, 0].tolist()  # the photo itself
    # the default nprobe (8) searches every list of so small an index: the exact answer
    index = build_index(path, factory="IVF4,PQ16x4fs", rebuild=True)
    assert index.n_images == 28 and index.n_added == 28
    approx = find_similar(path, queries, k=10)
    assert approx.method == "index"
    np.testing.assert_array_equal(approx.indices, exact.indices)
    np.testing.assert_allclose(approx.distances, exact.distances, atol=1e-5)
    assert approx.labels[:, 0].tolist() == list(PHOTO_NAMES)


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, 16)).astype(np.float32)
    W = rng.standard_normal((16, d)).astype(np.float32)
    z = centres[rng.integers(60, size=n)] + 0.4 * rng.standard_normal((n, 16), dtype=np.float32)
    return np.maximum(z @ W, 0) + 0.02 * rng.random((n, d), dtype=np.float32)


def _write(path, X, paths=None, overwrite=False):
    """A store of ``X``; ``overwrite``: the file is removed first (extracted again)."""
    if overwrite:
        os.unlink(path)
    w = StoreWriter(path, paths=paths or [f"{i}.jpg" for i in range(len(X))],
                    n_features=X.shape[1])
    w.write_rows(np.arange(len(X)), X)
    return w.finalize()


@pytest.fixture(scope="module")
def clustered_store(tmp_path_factory):
    X = _clustered(6000, 64)
    path = tmp_path_factory.mktemp("index_clustered") / "f.h5"
    _write(path, X).close()
    return path, X


def test_recall_when_the_index_proposes_few_candidates(clustered_store):
    path, X = clustered_store
    # out of core: trained on 2,000 rows, filled 500 rows at a time
    index = build_index(path, factory="IVF16,PQ64x4fs", sample_size=2000, chunk_size=500)
    assert index.n_images == 6000 and index.meta["nprobe"] == 8  # half the lists
    Q = _clustered(50, 64, seed=1)
    approx = find_similar(path, Q, k=10)  # 100 candidates of 6,000 re-ranked
    exact = find_similar(path, Q, k=10, exact=True)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.indices, exact.indices)])
    print(f"recall@10 with 100 candidates of 6,000 rows: {recall:.3f}")  # 0.98 measured
    assert recall >= 0.95
    # the distances it gives are the exact ones of the rows it found
    with FeatureStore(path) as store:
        rows = store.read_rows(approx.indices[0])[0]
    cos = rows @ Q[0] / np.linalg.norm(rows, axis=1) / np.linalg.norm(Q[0])
    np.testing.assert_allclose(approx.distances[0], 1 - cos, atol=1e-5)


def test_saved_beside_the_store_with_its_identity(clustered_store):
    path, _ = clustered_store
    folder = index_path(path)
    assert folder == f"{path}.index"
    names = sorted(os.listdir(folder))
    assert len(names) == 2 and names[1] == "meta.json" and names[0].endswith(".faiss")
    meta = json.loads(open(os.path.join(folder, "meta.json")).read())
    assert meta["schema"] == "skbottleneck.similarity_index" and meta["n_images"] == 6000
    assert meta["index_file"] == names[0]
    assert set(meta["identity"]) >= {"rows_sha256", "sample_sha256", "n_features"}
    # up to date: nothing is rewritten
    again = build_index(path, factory="IVF16,PQ64x4fs")
    assert again.n_added == 0 and sorted(os.listdir(folder)) == names


def test_appended_images_are_searched_then_added_alone(tmp_path):
    X = _clustered(3000, 32, seed=2)
    path = tmp_path / "grow.h5"
    _write(path, X[:2500]).close()
    build_index(path, factory="IVF8,PQ8x4fs", sample_size=1000)
    # the store is extracted again with 500 more images: the first 2,500 rows unchanged
    _write(path, X, overwrite=True).close()
    with FeatureStore(path) as store:
        assert load_index(store).n_new_images == 500
        result = find_similar(store, X[[2700, 10]], k=3)
    assert result.method == "index"
    assert result.indices[:, 0].tolist() == [2700, 10]  # a new row, from the exact tail scan
    index = build_index(path)
    assert index.n_added == 500 and index.n_images == 3000
    assert index.meta["factory"] == "IVF8,PQ8x4fs"  # appended to, not rebuilt
    assert len(os.listdir(index_path(path))) == 2  # the old index file is gone
    assert find_similar(path, X[[2700]], k=1).indices.tolist() == [[2700]]


@pytest.mark.parametrize("change, reason", [
    ("features", "other features in the indexed rows"),
    ("paths", "other paths or image contents"),
    ("fewer", "the store now holds 999"),
])
def test_an_index_refuses_a_store_that_changed(tmp_path, change, reason):
    X = _clustered(1200, 32, seed=3)
    path = tmp_path / "f.h5"
    _write(path, X).close()
    build_index(path, factory="IVF4,Flat")
    if change == "features":
        X = X.copy()
        X[::7] *= 0.5 + np.arange(32, dtype=np.float32)  # other directions, every 7th row
        _write(path, X, overwrite=True).close()
    elif change == "paths":
        _write(path, X, paths=[f"other/{i}.jpg" for i in range(1200)], overwrite=True).close()
    else:
        _write(path, X[:999], overwrite=True).close()
    with pytest.raises(StaleIndexError, match=reason) as e:
        find_similar(path, X[:1], k=3)
    assert "--rebuild" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(StaleIndexError, match=reason):
        build_index(path)
    assert find_similar(path, X[:1], k=1, exact=True).indices.tolist() == [[0]]
    expected = 999 if change == "fewer" else 1200
    assert build_index(path, rebuild=True).n_added == expected
    assert find_similar(path, X[:1], k=1).method == "index"


def test_command_builds_then_adds(tmp_path, capsys):
    from skbottleneck.cli import main

    X = _clustered(800, 16, seed=4)
    path = tmp_path / "f.h5"
    _write(path, X).close()
    assert main(["index", str(path), "--factory", "IVF4,Flat", "-q"]) == 0
    out = capsys.readouterr().out
    assert "index of 800 images (IVF4,Flat, nprobe 8) built" in out, out
    assert main(["index", str(path), "-q"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["index", str(path), "--factory", "NoSuchIndex", "--rebuild", "-q"]) != 0
    err = capsys.readouterr().err
    assert "faiss cannot make an index of 'NoSuchIndex'" in err, err
