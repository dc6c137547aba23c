"""Prediction on a Dask cluster: a fitted estimator applied to partitions in parallel."""

import math

import numpy as np

from ..chunks import default_client
from ..extraction import active_client
from ..feature_space import check_feature_space
from ..utils import is_dask_array

__all__ = ["predict_on_cluster"]

#: About this many partitions per worker thread for a non-dask input.
PARTITIONS_PER_THREAD = 4


def _apply_partition(X, estimator, method):
    return getattr(estimator, method)(X)


def _apply_to_block(block, estimator, method):
    return getattr(estimator, method)(block)


def predict_on_cluster(estimator, X, *, client=None, method="predict", partition_size=None):
    """Apply a fitted estimator to a large input, in parallel on a Dask cluster.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        For instance ``make_pipeline(CNNFeatureTransformer(...), head)``:
        each worker then runs the CNN on its partition of image paths (its
        model built once per worker process; features from and to the
        transformer's cache as on one machine).
    X : dask.array, or sequence of image paths / array-like
        A dask array (features) gives a lazy dask array back, computed
        block by block with ``map_blocks``. Anything else is cut into
        partitions of ``partition_size`` rows, one task each, and the
        results come back as one numpy array, in input order.
    client : dask.distributed.Client, default=None
        Needed for a non-dask ``X``; None: :func:`active_client`, else the
        default client.
    method : str, default="predict"
        ``"predict"``, ``"predict_proba"``, ``"decision_function"``,
        ``"transform"``...
    partition_size : int, default=None
        Rows per task for a non-dask ``X``; None: about 4 partitions per
        worker thread, at most 4096 rows each.

    Returns
    -------
    result : ndarray, or dask.array for a dask ``X``

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skbottleneck.distributed import predict_on_cluster
    >>> X = np.random.RandomState(0).normal(size=(100, 3))
    >>> clf = LogisticRegression().fit(X, X[:, 0] > 0)
    >>> y = predict_on_cluster(clf, da.from_array(X, chunks=25))
    >>> bool((y.compute() == clf.predict(X)).all())
    True
    """
    if not hasattr(estimator, method):
        raise AttributeError(f"{type(estimator).__name__} has no method {method!r}.")
    check_feature_space(estimator)  # before any task runs
    if is_dask_array(X):
        if X.ndim == 2 and len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        probe = getattr(estimator, method)(np.zeros((1,) + X.shape[1:], dtype=X.dtype))
        probe = np.asarray(probe)
        if probe.ndim == 1:
            return X.map_blocks(_apply_to_block, estimator, method, dtype=probe.dtype,
                                drop_axis=list(range(1, X.ndim)) if X.ndim > 1 else None,
                                meta=probe[:0])
        chunks = (X.chunks[0],) + tuple((s,) for s in probe.shape[1:])
        return X.map_blocks(_apply_to_block, estimator, method, dtype=probe.dtype, chunks=chunks,
                            meta=probe[:0])

    client = active_client(client) or default_client()
    if client is None:
        raise ValueError("predict_on_cluster needs a dask.distributed client for a non-dask X: "
                         "pass client=..., or create a Client first.")
    n = len(X)
    if partition_size is None:
        threads = max(1, sum(client.nthreads().values()))
        partition_size = max(1, min(4096, math.ceil(n / (PARTITIONS_PER_THREAD * threads))))
    rows = X.iloc if hasattr(X, "iloc") else X  # pandas: by position
    parts = [rows[s:s + partition_size] for s in range(0, n, partition_size)]
    # the estimator travels with each task (a fitted head and the transformer's
    # parameters: small; the CNN is built once per worker process), so that no
    # task waits on data held by one worker and the scheduler spreads them
    futures = client.map(_apply_partition, parts, estimator=estimator, method=method,
                         key=f"{method}-partition", pure=False, retries=3)
    results = client.gather(futures)
    for part, res in zip(parts, results):
        if len(res) != len(part):
            raise ValueError(
                f"{type(estimator).__name__}.{method} returned {len(res)} rows for a partition "
                f"of {len(part)} (images skipped with on_error='skip'?); rows must match."
            )
    return np.concatenate([np.asarray(r) for r in results]) if results else np.zeros(0)
