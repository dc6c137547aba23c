"""Features out: a store written to Parquet and .npy, read back by pyarrow, pandas and DuckDB."""

import os

import numpy as np
import pytest

from skbottleneck.store import FeatureStore, StoreWriter

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _store(path, n=23, d=7, dtype="float32", labels="str", keys=True):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = {"str": np.array(["cat", "dog", "bird"])[np.arange(n) % 3],
         "int": np.arange(n) % 4, None: None}[labels]
    k = [bytes([i]) * 16 for i in range(n)] if keys else None
    w = StoreWriter(path, paths=[f"img/{i}.jpg" for i in range(n)], labels=y, keys=k,
                    n_features=d, dtype=dtype)
    w.write_rows(np.arange(n), X)
    return w.finalize(), X, y, k


def test_parquet_has_one_row_per_image_in_store_order_with_its_columns(tmp_path):
    store, X, y, keys = _store(tmp_path / "s.h5")
    out = store.to_parquet(tmp_path / "f.parquet", chunk_size=5)
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 23 and meta.num_row_groups == 5  # streamed: 5 rows a group
    table = pq.read_table(out)
    assert table.column_names == ["key", "path", "label", "features"]
    vectors = table.schema.field("features").type
    assert pa.types.is_fixed_size_list(vectors) and vectors.list_size == 7
    assert vectors.value_type == pa.float32()
    assert table["key"].to_pylist() == keys
    assert table["path"].to_pylist() == [f"img/{i}.jpg" for i in range(23)]
    assert table["label"].to_pylist() == y.tolist()
    got = table["features"].combine_chunks().flatten().to_numpy().reshape(-1, 7)
    np.testing.assert_array_equal(got, X)


def test_pandas_and_duckdb_read_the_parquet_as_is(tmp_path):
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    store, X, y, _ = _store(tmp_path / "s.h5", labels="int")
    out = store.to_parquet(tmp_path / "f.parquet", chunk_size="1KiB")
    df = pd.read_parquet(out)
    assert df["label"].tolist() == y.tolist()
    np.testing.assert_array_equal(np.stack(df["features"].to_numpy()), X)
    con = duckdb.connect()
    n, = con.execute(f"SELECT count(*) FROM '{out}' WHERE label = 1").fetchone()
    assert n == int(np.sum(y == 1))
    vector, = con.execute(f"SELECT features FROM '{out}' WHERE path = 'img/4.jpg'").fetchone()
    np.testing.assert_array_equal(np.asarray(vector, np.float32), X[4])


def test_float16_store_exports_float16_vectors_and_reads_back(tmp_path):
    from skbottleneck.store import open_rows

    store, X, _, _ = _store(tmp_path / "s16.h5", dtype="float16", labels=None, keys=False)
    out = store.to_parquet(tmp_path / "f16.parquet")
    table = pq.read_table(out)
    assert table.schema.field("features").type.value_type == pa.float16()
    assert table["label"].null_count == 23 and table["key"].null_count == 23
    rows = open_rows(out)
    assert rows.dtype == np.float16 and rows.labels is None
    np.testing.assert_array_equal(rows.read_rows(np.arange(23))[0], X.astype(np.float32))


def test_to_numpy_writes_the_features_and_labels_beside_them(tmp_path):
    from skbottleneck.chunks import NumpyRows

    store, X, y, _ = _store(tmp_path / "s.h5")
    out = store.to_numpy(tmp_path / "f.npy", chunk_size=4)
    assert out == str(tmp_path / "f.npy")
    np.testing.assert_array_equal(np.load(out), X)
    np.testing.assert_array_equal(np.load(tmp_path / "f.labels.npy"), y)
    rows = NumpyRows(out)
    assert isinstance(rows.X, np.memmap) and rows.labels.tolist() == y.tolist()
    np.testing.assert_array_equal(store.to_numpy(), X)  # no path: in memory, as before


class _FailingRows:
    """A row source whose reads fail after ``ok`` chunks (a disk error mid-export)."""

    def __init__(self, store, ok):
        self.store, self.ok = store, ok
        self.n_features, self.dtype, self.labels = store.n_features, store.dtype, store.labels
        self.shape = store.shape

    def __len__(self):
        return len(self.store)

    def read_rows(self, indices, *, dtype=None):
        return self.store.read_rows(indices, dtype=dtype)

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None):
        for i, chunk in enumerate(self.store.iter_chunks(chunk_size, shuffle=shuffle,
                                                         dtype=dtype)):
            if i == self.ok:
                raise OSError("disk error")
            yield chunk


@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_a_failed_export_leaves_the_old_file_and_no_temporary(tmp_path, fmt):
    from skbottleneck.store._export import export_numpy, export_parquet

    store, _, _, _ = _store(tmp_path / "s.h5")
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"old")
    export = export_parquet if fmt == "parquet" else export_numpy
    with pytest.raises(OSError, match="disk error"):
        export(_FailingRows(store, ok=2), target, chunk_size=4)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out." + fmt, "s.h5"]
    export(store, target, chunk_size=4)  # a good export replaces it whole
    assert target.read_bytes() != b"old"


def test_cli_export_writes_parquet_and_npy(tmp_path, capsys):
    from skbottleneck.cli import main

    store, X, _, _ = _store(tmp_path / "s.h5")
    store.close()
    assert main(["export", str(tmp_path / "s.h5"), "--to", str(tmp_path / "f.parquet"),
                 "--chunk-size", "6"]) == 0
    assert "wrote 23 rows of 7 float32 features" in capsys.readouterr().out
    assert pq.ParquetFile(tmp_path / "f.parquet").metadata.num_row_groups == 4
    assert main(["export", str(tmp_path / "s.h5"), "--to", str(tmp_path / "f.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), X)
    assert main(["export", str(tmp_path / "s.h5"), "--to", str(tmp_path / "f.txt")]) == 2
    assert ".parquet or .npy" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.h5"), "--to", str(tmp_path / "g.npy")]) == 2


def test_an_empty_store_exports_an_empty_table(tmp_path):
    w = StoreWriter(tmp_path / "e.h5", paths=[], n_features=3)
    store = w.finalize()
    table = pq.read_table(store.to_parquet(tmp_path / "e.parquet"))
    assert table.num_rows == 0 and table.column_names[-1] == "features"
    assert isinstance(FeatureStore(tmp_path / "e.h5"), FeatureStore)
