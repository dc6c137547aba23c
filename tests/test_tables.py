"""Tables of images: real CSV and Parquet files (and DataFrames) of paths and labels,
from the API and from ``skbottleneck extract images.csv``."""

import os
import subprocess
import sys

import numpy as np
import pytest

from skbottleneck import FeatureStore
from skbottleneck.datasets import load_image_folder, load_image_table, make_photo_folder

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = make_photo_folder(tmp_path_factory.mktemp("tables"), n_per_class=2, size=(40, 40),
                               random_state=2)
    paths, labels = load_image_folder(folder)
    return folder, [os.path.relpath(p, folder) for p in paths], labels.tolist()


def test_csv_paths_resolve_against_the_table_folder_and_labels_stay_text(photos, tmp_path):
    folder, rel, labels = photos
    table = folder / "images.csv"
    codes = [f"00{i % 2}" for i in range(len(rel))]  # "007" stays "007", not 7
    table.write_text("path,label,code\n" + "".join(
        f"{p},{lab},{c}\n" for p, lab, c in zip(rel, labels, codes)))
    paths, got = load_image_table(table)
    assert paths.tolist() == [os.path.join(folder, p) for p in rel]
    assert got.tolist() == labels
    _, got = load_image_table(table, label_column="code")
    assert got.tolist() == codes
    paths, got = load_image_table(table, label_column=None)
    assert got is None and all(os.path.isfile(p) for p in paths)


def test_parquet_and_dataframes_with_other_column_names(photos, tmp_path):
    pd = pytest.importorskip("pandas")
    folder, rel, labels = photos
    absolute = [os.path.join(folder, p) for p in rel]
    ids = list(range(len(rel)))
    table = tmp_path / "sub" / "images.parquet"
    table.parent.mkdir()
    pq.write_table(pa.table({"file": absolute, "y": ids}), table)
    paths, got = load_image_table(table, path_column="file", label_column="y")
    assert paths.tolist() == absolute and got.tolist() == ids
    frame = pd.DataFrame({"file": rel, "y": labels})
    paths, got = load_image_table(frame, path_column="file", label_column="y")
    assert paths.tolist() == rel and got.tolist() == labels  # a DataFrame has no folder


def test_a_missing_column_names_it_and_the_columns_present(photos, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file,label\na.jpg,cat\n")
    with pytest.raises(KeyError, match=r"no path column 'path'; its columns are \['file', 'label'\]"):
        load_image_table(table)
    with pytest.raises(KeyError, match=r"no label column 'class'.*\['file', 'label'\]"):
        load_image_table(table, path_column="file", label_column="class")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="bad.parquet.*not a readable Parquet file"):
        load_image_table(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_image_table(tmp_path / "missing.csv")


def _cli(args, tmp_path):
    env = dict(os.environ, SKBOTTLENECK_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "skbottleneck", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_extracts_a_table_with_its_columns(photos, tmp_path):
    folder, rel, labels = photos
    table = folder / "cli.csv"
    table.write_text("file,kind\n" + "".join(f"{p},{lab}\n" for p, lab in zip(rel, labels)))
    small = ["--backbone", "mobilenet_v2", "--weights", "none", "--random-state", "0",
             "--input-size", "32", "--runtime", "tensorflow", "-q"]
    bad = _cli(["extract", table, "--out", tmp_path / "x.h5", *small], tmp_path)
    assert bad.returncode == 2 and "no path column 'path'" in bad.stderr
    assert "['file', 'kind']" in bad.stderr and "Traceback" not in bad.stderr

    out = tmp_path / "t.h5"
    done = _cli(["extract", table, "--path-column", "file", "--label-column", "kind",
                 "--out", out, *small], tmp_path)
    assert done.returncode == 0, done.stderr
    with FeatureStore(out) as store:
        assert store.labels.tolist() == labels
        assert list(store.paths) == [os.path.join(folder, p) for p in rel]
        assert np.isfinite(store[:]).all()
