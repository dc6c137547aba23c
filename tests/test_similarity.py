"""Image similarity search (:func:`skbottleneck.find_similar`, ``skbottleneck similar``).

Real photos (scikit-image's), the real EfficientNet-Lite0 with its ImageNet
weights at 64 px, real HDF5 stores; the command runs in a subprocess.
"""

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from skbottleneck import CNNFeatureTransformer, FeatureStore, find_similar
from skbottleneck.datasets import PHOTO_NAMES
from skbottleneck.store import StoreWriter

SIZE = 96


def _photo(name):
    import skimage.data

    photo = np.asarray(getattr(skimage.data, name)())
    return photo[..., :3] if photo.ndim == 3 else np.stack([photo] * 3, axis=-1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Seven whole photos (JPEG, 96 px wide) and a central 70% crop of each (JPEG)."""
    root = tmp_path_factory.mktemp("similar")
    (root / "photos").mkdir()
    (root / "crops").mkdir()
    paths, crops = [], []
    for name in PHOTO_NAMES:
        image = Image.fromarray(_photo(name))
        w, h = image.size
        small = image.resize((96, max(1, round(96 * h / w))))
        paths.append(str(root / "photos" / f"{name}.jpg"))
        small.save(paths[-1], quality=90)
        box = (round(0.15 * w), round(0.15 * h), round(0.85 * w), round(0.85 * h))
        crops.append(str(root / "crops" / f"{name}_crop.jpg"))
        image.crop(box).resize((80, 80)).save(crops[-1], quality=85)
    return root, np.asarray(paths), np.asarray(crops)


@pytest.fixture(scope="module")
def store_path(photos):
    root, paths, _ = photos
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=SIZE)
    cnn.extract(paths, np.asarray(PHOTO_NAMES), store=root / "photos.h5")
    return root / "photos.h5"


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_crop_finds_its_source_photo_first(photos, store_path, in_memory):
    _, paths, crops = photos
    result = find_similar(store_path, crops, k=3, in_memory=in_memory, chunk_size=2)
    assert result.method == ("in_memory" if in_memory else "streaming")
    assert result.n_chunks == (1 if in_memory else 4)  # 7 rows, 2 at a time
    assert result.paths[:, 0].tolist() == paths.tolist()
    assert result.labels[:, 0].tolist() == list(PHOTO_NAMES)
    assert result.queries.tolist() == crops.tolist()
    assert np.all(np.diff(result.distances, axis=1) >= 0)
    # the source is clearly nearer than the runner-up, not a coin toss
    assert np.all(result.distances[:, 0] < result.distances[:, 1] - 0.02), result.distances


def test_the_two_searches_agree_and_an_image_finds_itself(photos, store_path):
    _, paths, crops = photos
    queries = np.concatenate([crops, paths[:2]])
    memory = find_similar(store_path, queries, k=7, in_memory=True)
    streaming = find_similar(store_path, queries, k=7, in_memory=False, chunk_size=3)
    np.testing.assert_array_equal(memory.indices, streaming.indices)
    np.testing.assert_allclose(memory.distances, streaming.distances, atol=1e-6)
    assert sorted(memory.indices[0]) == list(range(7))  # every stored image, once
    assert memory.indices[-2:, 0].tolist() == [0, 1]
    np.testing.assert_allclose(memory.distances[-2:, 0], 0, atol=1e-5)


def test_with_views_only_the_images_themselves_are_searched(photos, store_path, tmp_path):
    _, paths, crops = photos
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=SIZE)
    store = cnn.extract(paths, np.asarray(PHOTO_NAMES), store=tmp_path / "views.h5",
                        augment=3).features
    assert len(store) == 21 and store.n_views == 3
    with FeatureStore(store_path) as plain:
        plain_X = plain.to_numpy()
    np.testing.assert_allclose(store.read_rows(np.arange(0, 21, 3))[0], plain_X, atol=1e-5)
    # the query is view 2 of the rocket exactly: its own row is not searched
    rocket = PHOTO_NAMES.index("rocket")
    query = store.read_rows([3 * rocket + 2])[0]
    for in_memory in (True, False):
        result = find_similar(store, query, k=10, in_memory=in_memory, chunk_size=4)
        assert result.indices.shape == (1, 7)  # k capped at the 7 images
        assert np.all(result.indices % 3 == 0)
        assert result.queries is None
    result = find_similar(store, crops, k=1)
    assert (result.indices[:, 0] // 3).tolist() == list(range(7))
    store.close()


@pytest.fixture(scope="module")
def large_store(tmp_path_factory):
    """A real HDF5 store of 4,000 rows x 512 features (8 MiB), clustered features."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 512)).astype(np.float32)
    X = centres[np.arange(4000) % 40] + 0.5 * rng.standard_normal((4000, 512)).astype(np.float32)
    path = tmp_path_factory.mktemp("large") / "large.h5"
    writer = StoreWriter(path, paths=[f"{i}.jpg" for i in range(4000)],
                         labels=np.arange(4000) % 40, n_features=512)
    writer.write_rows(np.arange(4000), X)
    writer.finalize()
    return path, X


def _peak_bytes(function):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_stays_bounded_on_a_store_larger_than_one_chunk(large_store):
    path, X = large_store
    rng = np.random.default_rng(1)
    targets = rng.choice(4000, size=20, replace=False)
    queries = X[targets] + 0.05 * rng.standard_normal((20, 512)).astype(np.float32)
    with FeatureStore(path) as store:
        # warm up: the first call imports modules (traced too) and reads paths and labels
        find_similar(store, queries[:1], k=1, in_memory=False, chunk_size=4000)
        find_similar(store, queries[:1], k=1, in_memory=True)
        streaming, streaming_peak = _peak_bytes(
            lambda: find_similar(store, queries, k=5, in_memory=False, chunk_size=100))
        memory, memory_peak = _peak_bytes(
            lambda: find_similar(store, queries, k=5, in_memory=True))
    store_bytes = X.nbytes  # 8 MiB
    assert streaming.n_chunks == 40
    # one chunk is 200 KiB: the streaming search held a few chunks' worth, not the store ...
    assert streaming_peak < 4 * 100 * 512 * 4 < store_bytes / 8, (streaming_peak, store_bytes)
    # ... and the measure does see a whole store held in memory
    assert memory_peak > store_bytes, (memory_peak, store_bytes)
    assert streaming.indices[:, 0].tolist() == targets.tolist()
    np.testing.assert_array_equal(streaming.indices, memory.indices)
    np.testing.assert_allclose(streaming.distances, memory.distances, atol=1e-6)
    assert streaming.labels[:, 0].tolist() == (targets % 40).tolist()


def test_auto_streams_above_the_memory_budget(large_store, monkeypatch):
    import skbottleneck.similarity._search as similarity

    path, X = large_store
    assert find_similar(path, X[:1], k=1).method == "in_memory"
    monkeypatch.setattr(similarity, "IN_MEMORY_MAX_BYTES", X.nbytes - 1)
    result = find_similar(path, X[:1], k=1, chunk_size="1MiB")
    assert result.method == "streaming" and result.n_chunks == 8  # 512 rows of 2 KiB a chunk
    assert result.indices.tolist() == [[0]]


def test_ties_are_ordered_by_store_row(tmp_path):
    path = tmp_path / "copies.h5"
    writer = StoreWriter(path, paths=list("abcdef"), n_features=2)
    writer.write_rows(np.arange(6), [[1, 0], [0, 1], [2, 0], [0, 3], [1, 0], [1, 1]])
    writer.finalize()
    for in_memory in (True, False):
        result = find_similar(path, [[5.0, 0.0]], k=4, in_memory=in_memory, chunk_size=2)
        assert result.indices.tolist() == [[0, 2, 4, 5]]
        assert result.labels is None
        assert result.to_records()[0] == {"query": None, "rank": 1, "distance": 0.0, "row": 0,
                                          "path": "a", "label": None}


def test_errors_name_what_is_wrong(photos, store_path, tmp_path, large_store):
    _, paths, _ = photos
    with pytest.raises(FileNotFoundError, match="no_such.h5"):
        find_similar(tmp_path / "no_such.h5", paths[:1])
    with pytest.raises(ValueError, match="512 columns.*holds 1280"):
        find_similar(store_path, large_store[1][:1])
    with pytest.raises(ValueError, match="'k' parameter of find_similar"):
        find_similar(store_path, paths[:1], k=0)
    # a store of another model (its fingerprint says 128 px) and this model's transformer
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=SIZE).fit()
    other = dict(cnn.fingerprint_, input_size=[128, 128])
    writer = StoreWriter(tmp_path / "other.h5", paths=["a.jpg"], n_features=1280,
                         metadata={"fingerprint": json.dumps(other, sort_keys=True)})
    writer.write_rows([0], np.ones((1, 1280)))
    writer.finalize()
    with pytest.raises(ValueError, match="other.h5 holds features of .*different feature spaces"):
        find_similar(tmp_path / "other.h5", paths[:1], transformer=cnn)
    from skbottleneck import ImageError

    with pytest.raises(ImageError, match="missing.jpg"):
        find_similar(store_path, [str(tmp_path / "missing.jpg")])


# ------------------------------------------------------------------ command line
def test_command_prints_the_nearest_photos(photos, store_path, tmp_path):
    """A real ``python -m skbottleneck similar`` on a folder of crops and an unreadable file."""
    root, paths, crops = photos
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    env = dict(os.environ)
    env.pop("SKBOTTLENECK_TRACEBACK", None)
    result = subprocess.run(
        [sys.executable, "-m", "skbottleneck", "similar", str(store_path), "crops", str(bad),
         "-k", "2"], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # the unreadable query
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("skbottleneck: error:")]
    assert len(errors) == 1 and "1 of 8 query images" in errors[0] and "bad.jpg" in errors[0]
    blocks = result.stdout.strip().split("\n\n")
    assert len(blocks) == len(crops)
    for block, name in zip(blocks, sorted(PHOTO_NAMES)):  # the folder, listed in name order
        lines = block.splitlines()
        assert lines[0] == f"query: {os.path.join('crops', name + '_crop.jpg')}"
        assert lines[1].split() == ["rank", "distance", "label", "path"]
        rank, distance, label, path = lines[2].split()
        assert (rank, label, path) == ("1", name, str(root / "photos" / f"{name}.jpg"))
        assert 0 <= float(distance) < 1
        assert len(lines) == 4


def test_command_json_streaming(photos, store_path, capsys):
    from skbottleneck.cli import main

    _, paths, crops = photos
    assert main(["similar", str(store_path), crops[2], crops[4], "-k", "3", "--format", "json",
                 "--method", "streaming", "--chunk-size", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [q["query"] for q in out] == [crops[2], crops[4]]
    assert [n["rank"] for n in out[0]["neighbors"]] == [1, 2, 3]
    assert [q["neighbors"][0]["path"] for q in out] == [paths[2], paths[4]]
    assert [q["neighbors"][0]["row"] for q in out] == [2, 4]
    assert out[0]["neighbors"][0]["label"] == PHOTO_NAMES[2] and out[0]["error"] is None


@pytest.mark.parametrize("args, fragment", [
    (["no_such.h5", "x.jpg"], "feature store 'no_such.h5' does not exist"),
    (["{store}", "no_such.jpg"], "'no_such.jpg' does not exist"),
    (["{store}", "x.jpg", "-k", "0"], "-k"),
])
def test_command_errors_are_one_line(args, fragment, store_path, tmp_path, monkeypatch, capsys):
    from skbottleneck.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["similar", *[a.format(store=store_path) for a in args]]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("skbottleneck: error:")]
    assert len(errors) == 1 and fragment in errors[0], err
