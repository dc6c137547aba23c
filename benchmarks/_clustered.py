"""A clustered synthetic feature set shaped like pooled CNN features.

Real pooled CNN features are non-negative (ReLU, then an average) and lie
near a space of far fewer dimensions than their width, in clusters (the
classes and near-copies of a photo collection). This generator mimics
that: ``n_clusters`` centres in a ``latent``-dimensional space, each row a
centre plus Gaussian scatter, mapped to ``d`` dimensions by one random
matrix and a ReLU, plus a little independent noise. Deterministic in
``seed``; made chunk by chunk, so a million rows never sit in memory at once.
Queries are fresh draws from the same clusters (not copies of stored rows).
"""

import numpy as np

N_CLUSTERS = 1000
LATENT = 48


def _space(d, seed):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)).astype(np.float32)
    centres = rng.standard_normal((N_CLUSTERS, LATENT)).astype(np.float32)
    return W, centres


def clustered_chunks(n, d, *, seed=0, stream=1, chunk=65536):
    """Yield ``(start, X)`` chunks (float32) of ``n`` rows of ``d`` features, in order."""
    W, centres = _space(d, seed)
    rng = np.random.default_rng([seed, stream])
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = centres[rng.integers(N_CLUSTERS, size=m)]
        z += 0.35 * rng.standard_normal((m, LATENT), dtype=np.float32)
        X = np.maximum(z @ W, 0)
        X += 0.02 * np.abs(rng.standard_normal((m, d), dtype=np.float32))
        yield start, X


def clustered(n, d, *, seed=0, stream=1):
    """All ``n`` rows at once (for small sets)."""
    return np.concatenate([X for _, X in clustered_chunks(n, d, seed=seed, stream=stream)])


def queries(n_queries, d, *, seed=0):
    """Query rows: fresh draws from the same clusters as ``clustered(..., seed=seed)``."""
    return clustered(n_queries, d, seed=seed, stream=2)
