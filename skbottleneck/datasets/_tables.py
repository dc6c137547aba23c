"""Tables of images: a CSV or Parquet file (or a DataFrame) of paths and labels."""

import os
import posixpath

import numpy as np

from ..remote import is_url, options_for, split_shard_path

__all__ = ["TABLE_EXTENSIONS", "is_table", "load_image_table"]

#: Extensions read as tables (compared case-insensitively).
TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")


def is_table(path):
    """Whether ``path`` names a table file (by its extension).

    Examples
    --------
    >>> from skbottleneck.datasets import is_table
    >>> is_table("images.csv"), is_table("s3://b/images.parquet"), is_table("train/")
    (True, True, False)
    """
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).lower().endswith(
        TABLE_EXTENSIONS)


def _read_table(source, storage_options, text_columns):
    """A pyarrow Table, or a DataFrame as given; the table's folder (None for a DataFrame)."""
    if not isinstance(source, (str, os.PathLike)):
        if hasattr(source, "columns") and hasattr(source, "__getitem__"):
            return source, None
        raise TypeError("load_image_table expects a path or URL of a .csv or .parquet file, "
                        f"or a DataFrame; got {type(source).__name__}.")
    source = os.fspath(source)
    if not is_table(source):
        raise ValueError(f"Table {source!r}: expected a file ending in "
                         f"{', '.join(TABLE_EXTENSIONS)}.")
    import pyarrow
    import pyarrow.csv
    import pyarrow.parquet

    parquet = not source.lower().endswith(".csv")
    if is_url(source):
        from fsspec.core import url_to_fs

        fs, inner = url_to_fs(source, **options_for(source, storage_options))
        opener, folder = (lambda: fs.open(inner, "rb")), posixpath.dirname(source)
    else:
        opener, folder = (lambda: open(source, "rb")), os.path.dirname(os.path.abspath(source))
    # use_threads=False: a table of paths reads fast enough in one thread, and
    # Arrow's pool, used on a Python file, could abort the process at exit
    # ('terminate called without an active exception': 1 of 72 CLI runs on a
    # loaded machine; apache/arrow#34314, #50482)
    try:
        with opener() as f:
            if parquet:
                return pyarrow.parquet.read_table(f, use_threads=False), folder
            # paths and labels stay text: "007" is not the number 7
            convert = pyarrow.csv.ConvertOptions(
                column_types={c: pyarrow.string() for c in text_columns if c is not None})
            return pyarrow.csv.read_csv(f, read_options=pyarrow.csv.ReadOptions(use_threads=False),
                                        convert_options=convert), folder
    except FileNotFoundError as e:
        raise FileNotFoundError(f"Table {source!r} does not exist.") from e
    except (OSError, ValueError) as e:  # pyarrow.ArrowInvalid is a ValueError
        kind = "Parquet" if parquet else "CSV"
        raise ValueError(f"Table {source!r} is not a readable {kind} file: {e}") from e


def _column(table, name, what, source):
    columns = [str(c) for c in table.columns] if hasattr(table, "columns") else []
    if hasattr(table, "column_names"):
        columns = list(table.column_names)
    if name not in columns:
        raise KeyError(f"Table {source}: no {what} column {name!r}; its columns are "
                       f"{columns}. Pass {what}_column= (--{what}-column) to name another.")
    column = table[name]
    if hasattr(column, "to_numpy") and hasattr(column, "combine_chunks"):  # pyarrow
        return column.to_numpy(zero_copy_only=False)
    return np.asarray(column)


def _resolve(path, folder):
    if folder is None or is_url(path) or os.path.isabs(path):
        return path
    if split_shard_path(path) is not None and is_url(split_shard_path(path)[0]):
        return path
    return posixpath.join(folder, path) if is_url(folder) else os.path.join(folder, path)


def load_image_table(source, path_column="path", label_column="label", *, storage_options=None):
    """The image paths and labels of a table: CSV, Parquet or a DataFrame.

    Parameters
    ----------
    source : str, os.PathLike or DataFrame
        A ``.csv``, ``.parquet`` or ``.pq`` file, local or a URL
        (``s3://bucket/images.parquet``), or a pandas DataFrame (anything
        with ``columns`` and ``df[name]``) or a pyarrow Table.
    path_column : str, default="path"
        The column of image paths: local paths, URLs or tar shard members
        (``shard.tar::member``). Relative paths resolve against the folder
        of the table file (a DataFrame's stay as they are).
    label_column : str or None, default="label"
        The column of labels; None: no labels.
    storage_options : dict, default=None
        fsspec options to read a table given as a URL.

    Returns
    -------
    paths : ndarray of object of shape (n_images,)
    labels : ndarray of shape (n_images,) or None
        The label column as stored (strings stay strings, even ``"007"``
        in a CSV; numbers stay numbers in Parquet); None when
        ``label_column`` is None.

    Raises
    ------
    KeyError
        A column is missing: the message names it and the columns present.
    ValueError
        The file is not a readable table, or a path is empty or missing.
    FileNotFoundError
        The table file does not exist.

    Examples
    --------
    >>> from skbottleneck.datasets import load_image_table
    >>> table = tmp_dir / "images.csv"
    >>> _ = table.write_text("path,label\\ncat/1.jpg,cat\\n/data/dog/2.jpg,dog\\n")
    >>> paths, labels = load_image_table(table)
    >>> paths[0] == str(tmp_dir / "cat" / "1.jpg"), paths[1], labels.tolist()
    (True, '/data/dog/2.jpg', ['cat', 'dog'])
    """
    table, folder = _read_table(source, storage_options, (path_column, label_column))
    name = repr(os.fspath(source)) if folder is not None else "(DataFrame)"
    raw = _column(table, path_column, "path", name)
    labels = None if label_column is None else _column(table, label_column, "label", name)
    paths = np.empty(len(raw), dtype=object)
    for i, p in enumerate(raw):
        if p is None or (isinstance(p, float) and np.isnan(p)) or not str(p).strip():
            raise ValueError(f"Table {name}: row {i} has no path in column {path_column!r}.")
        paths[i] = _resolve(os.fspath(p) if isinstance(p, os.PathLike) else str(p), folder)
    if labels is not None and labels.dtype.kind == "O" and all(isinstance(v, str) for v in labels):
        labels = labels.astype(str)
    return paths, labels
