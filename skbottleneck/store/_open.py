"""One opener for every kind of row source on disk: :func:`open_rows`."""

import os

from ..chunks import FEATURE_FILE_SUFFIXES, as_row_source, is_row_source, open_feature_file

__all__ = ["open_rows"]

def open_rows(source, y=None, **options):
    """Open a feature store or a feature file as a row source.

    Parameters
    ----------
    source : str, path-like, RowSource, ndarray or dask array
        A store (``.h5``, or any other suffix) opens as a
        :class:`FeatureStore`; a Parquet file
        (``.parquet``), a ``.npy`` (memory-mapped) or a CSV (label first,
        then the features) as a :class:`~skbottleneck.chunks.ParquetRows`,
        :class:`~skbottleneck.chunks.NumpyRows` or
        :class:`~skbottleneck.chunks.CsvRows`. A row source is returned
        as it is; an array is wrapped
        (:func:`~skbottleneck.chunks.as_row_source`).
    y : array-like, default=None
        Labels replacing the source's own.
    **options
        For the feature file's reader (``vector_column=``,
        ``label_column=``...).

    Returns
    -------
    rows : RowSource

    Examples
    --------
    >>> import numpy as np
    >>> np.save(tmp_dir / "f.npy", np.ones((4, 3), np.float32))
    >>> rows = open_rows(tmp_dir / "f.npy", y=[0, 1, 0, 1])
    >>> rows.shape, rows.labels.tolist()
    ((4, 3), [0, 1, 0, 1])
    """
    if is_row_source(source) or not isinstance(source, (str, os.PathLike)):
        return as_row_source(source, y)
    suffix = os.path.splitext(os.fspath(source))[1].lower()
    if suffix not in FEATURE_FILE_SUFFIXES:  # a store, whatever its name
        from ._reader import FeatureStore

        return as_row_source(FeatureStore(source), y)
    if suffix == ".npy" and y is not None:
        return open_feature_file(source, labels=y, **options)
    return as_row_source(open_feature_file(source, **options), y)
