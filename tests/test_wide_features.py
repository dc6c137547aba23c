"""Wide features (un-pooled maps) trained out of core in a small, bounded memory.

A real store of a few hundred rows of 20,000 features: chunks sized in
bytes keep the heads' working memory near their budget whatever the width,
give the same (or an as accurate) model as the default budget, and a
float16 store is trained on in float32.
"""

import tracemalloc

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from skbottleneck import FeatureStore, IncrementalClassifier
from skbottleneck.chunks import chunk_rows, parse_bytes
from skbottleneck.store import StoreWriter

N_ROWS, N_FEATURES = 320, 20_000
BUDGET = "1MiB"  # 13 rows of 20,000 float32 features


def _features(n_rows, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_rows)
    signal = np.zeros(N_FEATURES, dtype=np.float32)
    signal[:500] = 0.5
    X = rng.normal(size=(n_rows, N_FEATURES)).astype(np.float32) + y[:, None] * signal
    return X, np.where(y == 1, "dog", "cat")


def _write(path, X, y, dtype):
    writer = StoreWriter(path, paths=[f"img_{i}.jpg" for i in range(len(X))], labels=y,
                         n_features=X.shape[1], dtype=dtype)
    for start in range(0, len(X), 64):
        rows = np.arange(start, min(len(X), start + 64))
        writer.write_rows(rows, X[rows])
    return writer.finalize()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """float32 and float16 training stores of the same rows, and a test set in memory."""
    folder = tmp_path_factory.mktemp("wide")
    X, y = _features(N_ROWS, seed=0)
    X_test, y_test = _features(200, seed=1)
    f32 = _write(folder / "f32.h5", X, y, "float32")
    f16 = _write(folder / "f16.h5", X, y, "float16")
    yield f32, f16, X, y, X_test, y_test
    f32.close()
    f16.close()


def _peak_traced(fn):
    """Peak bytes allocated (numpy included) while ``fn()`` runs, and its result."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, result


def _sgd_head(**params):
    return IncrementalClassifier(SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
                                 epochs=3, random_state=0, **params)


def test_chunk_size_in_bytes_sets_rows_from_the_feature_width():
    assert chunk_rows(BUDGET, N_FEATURES * 4) == 13
    assert chunk_rows("auto", 100_352 * 4) == 167  # 64 MiB of un-pooled ResNet50 rows
    assert chunk_rows("auto", 100_352 * 4, multiple_of=128) == 128
    assert chunk_rows("auto", 64 * 8) == 1024  # narrow rows: as before
    assert chunk_rows(300, 10**9) == 300  # rows, as given
    assert parse_bytes("2 GiB") == 2 * 2**30 and parse_bytes("500MB") == 500 * 10**6
    with pytest.raises(ValueError, match=r"'64 parsecs'"):
        chunk_rows("64 parsecs", 100)


@pytest.mark.parametrize("which", ["float32", "float16"])
def test_small_budget_bounds_the_working_memory_of_a_wide_fit(stores, which):
    f32, f16, _, _, X_test, y_test = stores
    store = f32 if which == "float32" else f16
    budget = parse_bytes(BUDGET)
    state = 8 * N_FEATURES * 8  # scaler (mean, var, scale, counts) and SGD weights, float64
    peak, small = _peak_traced(lambda: _sgd_head(chunk_size=BUDGET).fit(store))
    # the chunk read, its float16 buffer, its scaled copy, the scaler's slices
    assert peak < 6 * budget + state, f"peak {peak / 2**20:.1f} MiB"
    default_peak, default = _peak_traced(lambda: _sgd_head().fit(store))
    assert default_peak > 4 * peak  # the default (auto) chunk holds every row here
    assert small.estimator_.coef_.dtype == np.float32  # computed in float32
    assert small.score(X_test, y_test) >= default.score(X_test, y_test) - 0.03
    assert small.score(X_test, y_test) > 0.9


def test_keras_head_is_the_same_with_a_small_budget_and_from_float16(stores):
    pytest.importorskip("tensorflow")
    from skbottleneck import KerasMLPClassifier

    f32, f16, X, y, X_test, y_test = stores

    def keras(**params):
        return KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=2, batch_size=16,
                                  shuffle=False, random_state=0, **params)

    # one 16-row batch per chunk, or every batch in one chunk: the same steps
    small = keras(chunk_size=BUDGET).fit(f32)
    default = keras().fit(f32)
    for a, b in zip(small.model_.get_weights(), default.model_.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # a float16 store trains in float32 on exactly its float16 values
    from_f16 = keras(chunk_size=BUDGET).fit(f16)
    in_memory = keras(chunk_size=BUDGET).fit(X.astype(np.float16).astype(np.float32), y)
    assert all(w.dtype == np.float32 for w in from_f16.model_.get_weights())
    for a, b in zip(from_f16.model_.get_weights(), in_memory.model_.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert from_f16.score(X_test, y_test) > 0.75


def test_float16_store_is_as_accurate_as_float32(stores):
    f32, f16, _, _, X_test, y_test = stores
    a = _sgd_head(chunk_size=BUDGET).fit(f32).score(X_test, y_test)
    b = _sgd_head(chunk_size=BUDGET).fit(f16).score(X_test, y_test)
    assert abs(a - b) <= 0.02


def test_verbose_long_epoch_shows_a_progress_bar_with_rows_per_second(stores, capsys,
                                                                     monkeypatch):
    from skbottleneck.heads import _base

    monkeypatch.setattr(_base, "PROGRESS_DELAY_S", 0.0)  # every epoch counts as long
    f32 = stores[0]
    _sgd_head(chunk_size=BUDGET, verbose=1).fit(f32)
    err = capsys.readouterr().err
    assert "IncrementalClassifier epoch 3/3" in err  # the bar
    assert "rows/s" in err and "[IncrementalClassifier] epoch 3/3: 320 rows in" in err


def test_store_is_read_as_float32_never_whole(stores):
    f16 = stores[1]
    assert isinstance(f16, FeatureStore) and f16.dtype == np.float16
    rows = _sgd_head(chunk_size=BUDGET)._wrap(f16).chunk_size
    assert rows == 13
