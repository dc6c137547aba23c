"""Rows that are not finite: which ones, named in a clear error.

scikit-learn says only "Input X contains NaN" about a NaN or an infinity;
with rows read from a store or a feature file that names neither the file
nor the row. :func:`check_finite_rows` finds the non-finite rows of a
:class:`~skbottleneck.chunks.RowSource` in one pass (in store order) and
raises naming the source and the first few of them. It runs on the error
path only: a finite source costs nothing.
"""

import numpy as np

__all__ = ["check_finite_rows", "check_storable", "nonfinite_message", "nonfinite_rows"]

#: How many bad rows a message names.
SHOWN = 5


def check_storable(features, stored, *, where):
    """Refuse features that a float16 storage turned into infinities (|x| > 65504).

    ``features`` are the rows given, ``stored`` the same rows in the storage
    dtype; ``where`` names the store or cache. A float16 infinity is an
    overflow, whether it came from this conversion or from a CNN that
    computed in float16; other non-finite values are left to the readers
    (:func:`check_finite_rows`).

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.array([[1.0, 7e4]])
    >>> check_storable(rows, rows.astype(np.float16), where="photos.h5")
    Traceback (most recent call last):
    ...
    ValueError: photos.h5 stores float16 features, ... these features reach 70000: ...
    """
    if stored.dtype != np.float16 or not np.isinf(stored).any():
        return
    features = np.asarray(features)
    finite = np.isfinite(features)
    if features.dtype == np.float16 or not finite.any():
        reach = "float16's infinity (they overflowed before they were stored)"
    else:
        reach = f"{float(np.abs(features[finite]).max()):.6g}"
    raise ValueError(
        f"{where} stores float16 features, whose largest magnitude is 65504, but these "
        f"features reach {reach}: {int(np.isinf(stored).sum())} values would be stored as "
        'infinity. Use dtype="float32".'
    )


def nonfinite_rows(source, chunk_rows=4096):
    """Row numbers (in ``source`` order) holding a NaN or an infinity, one pass.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.chunks import ArrayRows
    >>> nonfinite_rows(ArrayRows(np.array([[0.0], [np.nan], [1.0], [np.inf]]))).tolist()
    [1, 3]
    """
    bad = []
    n = len(source)
    for start in range(0, n, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, n), dtype=np.int64)
        X = np.asarray(source.read_rows(rows)[0])
        bad.append(rows[~np.isfinite(X).all(axis=1)])
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def source_name(source):
    """How a message names ``source``: its path, else its type."""
    path = getattr(source, "path", None)
    kind = "FeatureStore" if type(source).__name__ in ("FeatureStore", "StoreSubset") else \
        type(source).__name__
    return f"the {kind} {path!s}" if path is not None else f"the {kind}"


def check_finite_rows(source, *, owner):
    """Raise a ValueError naming ``source`` and its first non-finite rows, if it has any.

    ``owner`` says who refuses them (``"IncrementalClassifier"``,
    ``"find_similar"``).

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.chunks import ArrayRows
    >>> check_finite_rows(ArrayRows(np.ones((2, 2))), owner="me")  # all finite: nothing
    >>> check_finite_rows(ArrayRows(np.array([[1.0, np.nan]])), owner="me")
    Traceback (most recent call last):
    ...
    ValueError: me cannot use the ArrayRows: 1 row holds NaN or infinity (row 0...
    """
    message = nonfinite_message(source, owner=owner)
    if message is not None:
        raise ValueError(message)


def nonfinite_message(source, *, owner):
    """The message of :func:`check_finite_rows`; None when every row is finite."""
    bad = nonfinite_rows(source)
    if not len(bad):
        return None
    X = np.asarray(source.read_rows(bad[:1])[0])
    what = "NaN" if np.isnan(X).any() else "infinity"
    shown = ", ".join(str(int(r)) for r in bad[:SHOWN]) + (", ..." if len(bad) > SHOWN else "")
    plural = "s" if len(bad) > 1 else ""
    return (
        f"{owner} cannot use {source_name(source)}: {len(bad)} row{plural} hold"
        f"{'' if plural else 's'} NaN or infinity (row{plural} {shown}; row {int(bad[0])} "
        f"holds {what}). Features must be finite numbers: extract those images again, or "
        "leave those rows out."
    )
