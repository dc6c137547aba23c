"""The row protocol and feature files in: Parquet, .npy and seed 004's CSV as row sources."""

import numpy as np
import pytest

from skbottleneck.chunks import (
    ArrayRows,
    CsvRows,
    DaskChunks,
    FeatureFileError,
    NumpyRows,
    ParquetRows,
    RowSource,
    is_row_source,
    iter_row_chunks,
)
from skbottleneck.store import FeatureStore, StoreSubset, StoreWriter, open_rows

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _blobs(n=300, d=6, seed=0):
    """Two separable classes, sorted by class (a chunk of neighbours holds one class)."""
    rng = np.random.RandomState(seed)
    y = np.repeat(np.array(["cat", "dog"]), n // 2)
    X = (rng.normal(size=(n, d)) + 3 * (y == "dog")[:, None]).astype(np.float32)
    return X, y


def _parquet(path, X, y, row_group_size=32):
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
    pq.write_table(pa.table({"label": y, "features": vectors}), path,
                   row_group_size=row_group_size)
    return path


def _csv(path, X, y, header=False):
    with open(path, "w") as f:
        if header:
            f.write("label," + ",".join(f"f{j}" for j in range(X.shape[1])) + "\n")
        for label, row in zip(y, X):
            f.write(label + "," + ",".join(repr(float(v)) for v in row) + "\n")
    return path


@pytest.fixture
def sources(tmp_path):
    """The same rows as every kind of row source."""
    X, y = _blobs()
    w = StoreWriter(tmp_path / "s.h5", paths=[f"{i}.jpg" for i in range(len(X))], labels=y,
                    n_features=X.shape[1])
    w.write_rows(np.arange(len(X)), X)
    store = w.finalize()
    np.save(tmp_path / "f.npy", X)
    np.save(tmp_path / "f.labels.npy", y)
    out = {
        "store": store,
        "subset": StoreSubset(store, np.arange(len(X))),
        "array": ArrayRows(X, y),
        "parquet": ParquetRows(_parquet(tmp_path / "f.parquet", X, y)),
        "npy": NumpyRows(tmp_path / "f.npy"),
        "csv": CsvRows(_csv(tmp_path / "f.csv", X, y), block_rows=16),
    }
    da = pytest.importorskip("dask.array")
    out["dask"] = DaskChunks(da.from_array(X, chunks=(50, X.shape[1])), y)
    yield X, y, out
    store.close()


def test_every_source_implements_the_protocol_and_gives_each_row_once(sources):
    X, y, out = sources
    for name, rows in out.items():
        assert isinstance(rows, RowSource) and is_row_source(rows), name
        assert rows.shape == X.shape and len(rows) == len(X), name
        got_X, got_y = rows.read_rows([5, 299, 0])
        np.testing.assert_allclose(got_X, X[[5, 299, 0]], rtol=1e-6, err_msg=name)
        assert got_y.tolist() == y[[5, 299, 0]].tolist(), name
        chunks = list(rows.iter_chunks(64, shuffle=True, random_state=0))
        assert [len(c) for c, _ in chunks] == [64, 64, 64, 64, 44], name
        seen = np.concatenate([c for c, _ in chunks])
        order = np.lexsort(seen.T[::-1])
        np.testing.assert_allclose(seen[order], X[np.lexsort(X.T[::-1])], rtol=1e-6)
        # block-shuffled: a chunk of a class-sorted source mixes both classes
        assert sum(len(set(c.tolist())) == 2 for _, c in chunks) >= 3, name
    for not_rows in (X, X.tolist(), "f.parquet", FeatureStore):
        assert not is_row_source(not_rows)


def test_the_one_iterator_is_reproducible_and_unshuffled_in_order(sources):
    X, _, out = sources
    for name, rows in out.items():
        a = [c for c, _ in iter_row_chunks(rows, 50, random_state=3)]
        b = [c for c, _ in iter_row_chunks(rows, 50, random_state=3)]
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True)), name
        ordered = np.concatenate([c for c, _ in rows.iter_chunks(70, shuffle=False)])
        np.testing.assert_allclose(ordered, X, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("kind", ["parquet", "npy", "csv"])
def test_incremental_classifier_learns_from_a_feature_file_by_its_path(tmp_path, kind):
    from sklearn.linear_model import SGDClassifier

    from skbottleneck import IncrementalClassifier

    X, y = _blobs()
    if kind == "parquet":
        path = _parquet(tmp_path / "f.parquet", X, y)
    elif kind == "npy":
        np.save(tmp_path / "f.npy", X)
        np.save(tmp_path / "f.labels.npy", y)
        path = tmp_path / "f.npy"
    else:
        path = _csv(tmp_path / "f.csv", X, y, header=True)
    clf = IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=0), epochs=3,
                                chunk_size=40, early_stopping=True, random_state=0)
    clf.fit(str(path))
    assert clf.classes_.tolist() == ["cat", "dog"] and clf.n_features_in_ == 6
    assert clf.score(open_rows(path)) > 0.95
    assert clf.score(X, y) > 0.95


def test_a_subset_of_a_block_source_is_read_block_by_block(sources):
    from skbottleneck.chunks import RowSubset

    X, y, out = sources
    rows = np.arange(3, 300, 3)
    for name in ("parquet", "csv", "dask", "store"):
        subset = RowSubset(out[name], rows, labels=np.arange(300))
        chunks = list(subset.iter_chunks(25, random_state=1))
        got = np.concatenate([c for _, c in chunks])
        assert sorted(got.tolist()) == rows.tolist(), name
        for Xc, yc in chunks:
            np.testing.assert_allclose(Xc, X[yc], rtol=1e-6, err_msg=name)
    # the subset's blocks are the source's row groups (32 rows), cut to it
    bounds = RowSubset(out["parquet"], rows).row_blocks()
    assert bounds[0] == 0 and bounds[-1] == len(rows) and np.all(np.diff(bounds) <= 11)


def test_npy_labels_by_argument_and_memory_mapped(tmp_path):
    X, y = _blobs()
    np.save(tmp_path / "f.npy", X)
    rows = open_rows(tmp_path / "f.npy", y=y)
    assert isinstance(rows, NumpyRows) and isinstance(rows.X, np.memmap)
    assert rows.labels.tolist() == y.tolist()
    assert NumpyRows(tmp_path / "f.npy").labels is None


def test_find_similar_searches_a_parquet_file(tmp_path):
    from skbottleneck import find_similar

    X, y = _blobs()
    path = _parquet(tmp_path / "f.parquet", X, y)
    result = find_similar(path, X[[7, 250]], k=1, in_memory=False, chunk_size=32)
    assert result.indices[:, 0].tolist() == [7, 250]
    assert result.labels[:, 0].tolist() == ["cat", "dog"]


def test_keras_mlp_learns_from_parquet(tmp_path):
    pytest.importorskip("tensorflow")
    from skbottleneck import KerasMLPClassifier

    X, y = _blobs(n=200)
    path = _parquet(tmp_path / "f.parquet", X, y)
    clf = KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=5, chunk_size=50, batch_size=10,
                             learning_rate=1e-2,
                             random_state=0).fit(open_rows(path))
    assert clf.score(X, y) > 0.9


def test_parquet_without_the_vector_column_is_one_clear_error(tmp_path):
    pq.write_table(pa.table({"label": ["a"], "vec": [[1.0, 2.0]]}), tmp_path / "bad.parquet")
    with pytest.raises(FeatureFileError, match=r"bad\.parquet has no vector column 'features'.*"
                                               r"\['label', 'vec'\]"):
        open_rows(tmp_path / "bad.parquet")
    with pytest.raises(FeatureFileError, match=r"Column 'vec' of .*bad\.parquet is list<"):
        open_rows(tmp_path / "bad.parquet", vector_column="vec")


def test_csv_with_a_non_numeric_cell_names_file_row_and_column(tmp_path):
    X, y = _blobs(n=40)
    path = _csv(tmp_path / "f.csv", X, y)
    lines = path.read_text().splitlines()
    cells = lines[33].split(",")
    cells[4] = "n/a"
    lines[33] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    rows = CsvRows(path, block_rows=8)
    np.testing.assert_allclose(rows.read_rows([2])[0], X[[2]], rtol=1e-6)
    with pytest.raises(FeatureFileError, match=r"f\.csv, row 33 \(line 34\), column 4: 'n/a' "
                                               "is not a number"):
        list(rows.iter_chunks(16, shuffle=False))
    path.write_text("cat,1,2\ndog,3\n")
    with pytest.raises(FeatureFileError, match=r"Line 2 of .*f\.csv has 2 cells; the first row has 3"):
        CsvRows(path)
