"""Memory of the whole-matrix families: estimates said up front, and the blocked computations they rely on."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from anime_recs.core.errors import UserInputError
from anime_recs.models import Interactions, build_model, linalg
from anime_recs.models import neighbourhood as nb
from anime_recs.models.ease import ease_weights


def _world(n_users: int, n_items: int, n: int, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    popular = rng.zipf(1.3, n_items * 10) % n_items
    frame = pd.DataFrame({"user_id": rng.integers(n_users, size=n), "anime_id": rng.choice(popular, n),
                          "rating": rng.integers(1, 11, n).astype(float)})
    return Interactions.from_frame(frame, (1.0, 10.0))


@pytest.mark.parametrize("family", ["ease", "neighbourhood", "hybrid"])
def test_estimate_bounds_the_measured_peak(family: str) -> None:
    data = _world(900, 500, 15_000)
    # Two ALS sweeps instead of ten: each sweep frees what the previous one allocated, so the peak (what the
    # estimate bounds) is the same, and the fit is 4x cheaper.
    als = {"iterations": 2}
    config = {"ease": {}, "neighbourhood": als, "hybrid": {"rating": als}}[family]
    model = build_model({"family": family, **config})
    estimate = model.memory_estimate(*data.shape, len(data))
    import scipy.linalg  # noqa: F401 - a first import allocates module objects, not the fit's memory

    tracemalloc.start()
    try:
        model.fit(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # An upper bound that is not absurdly loose: the user sees a number they can plan with.
    print(f"{family}: peak {peak / 1e6:.1f} MB, estimate {estimate / 1e6:.1f} MB")
    assert peak <= estimate <= 3 * peak, (peak, estimate)
    info = model.fit_info if family != "hybrid" else model.fit_info["rating"]
    assert info["memory_estimate_gb"] > 0


def test_full_scale_estimate_fits_a_24_gb_machine() -> None:
    # MyAnimeList at full size: 325k users, 17.5k anime, 68M rated rows.
    need = build_model({"family": "hybrid"}).memory_estimate(325_000, 17_500, 68_000_000)
    assert 5e9 < need < 20e9


def test_fit_stops_in_one_line_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=10 << 20))
    model = build_model({"family": "ease"})
    with pytest.raises(UserInputError, match=r"model=ease needs about .* GB to fit 1,500 users x .* only 0.0 GB is available; "
                                              r".*model=original") as error:
        model.fit(_world(1500, 900, 40_000))
    assert "\n" not in str(error.value)


def test_blocked_ease_weights_match_the_closed_form(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    X = sp.random(300, 120, density=0.1, random_state=3, format="csr", dtype=np.float32)
    X.data[:] = 1 + 2 * (rng.random(X.nnz) < 0.4)
    Y = (X > 1).astype(np.float32).tocsr()
    dense_x = X.toarray().astype(np.float64)
    P = np.linalg.inv(dense_x.T @ dense_x + 7.0 * np.eye(120))
    C = P @ dense_x.T @ Y.toarray()
    expected = C - P * (np.diag(C) / np.diag(P))[None, :]
    np.fill_diagonal(expected, 0.0)
    for block in (2048, 17):  # one block, then uneven blocks
        monkeypatch.setattr(linalg, "BLOCK_ROWS", block)
        np.testing.assert_allclose(ease_weights(X, Y, 7.0), expected, atol=1e-5)


def test_blocked_similarities_and_als_match_the_one_shot_results(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _world(200, 80, 4000)
    residual = data.matrix(data.ratings - data.ratings.mean()).astype(np.float32).tocsr()
    rated = data.matrix().astype(np.float32).tocsr()
    fixed = np.random.default_rng(0).normal(size=(data.shape[1], 8))
    one_shot_sim = nb._pearson_baseline(residual, rated, None, 100.0)
    one_shot_als = nb._als_side(residual, fixed, 0.1)
    monkeypatch.setattr(nb, "_DENSE_LIMIT", 0)  # the sparse path
    monkeypatch.setattr(nb, "_BLOCK_ELEMENTS", 7 * 200 + 5)  # blocks of 7 rows of similarities
    monkeypatch.setattr(nb, "_OUTER_ELEMENTS", 8 * 8 * 13)  # outer products 13 fixed rows at a time
    np.testing.assert_allclose(nb._pearson_baseline(residual, rated, None, 100.0), one_shot_sim, atol=1e-5)
    np.testing.assert_allclose(nb._als_side(residual, fixed, 0.1), one_shot_als, atol=1e-10)


def test_blend_features_by_block_equal_the_whole_block(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _world(120, 60, 3000)
    parts = nb._Parts(data, build_model({"family": "neighbourhood"}).params)
    users, items = data.user_rows[:500], data.item_rows[:500]
    whole = parts.features(np.unique(users))
    expected = whole[np.searchsorted(np.unique(users), users), items]
    monkeypatch.setattr(nb, "_BLOCK_ELEMENTS", 3 * 60 * 7)  # 7 users per block
    np.testing.assert_allclose(parts.features_at(users, items), expected, atol=1e-6)


@pytest.mark.parametrize(("shape", "dtype"), [((300, 120), np.float32), ((80, 200), np.float64)])
def test_randomized_svd_equals_scikit_learns(shape: tuple[int, int], dtype: type) -> None:
    # Ours replaced sklearn.utils.extmath.randomized_svd (whose import cost 1.5-2 s per process): saved
    # models and the README's tables were computed with it, so it must give the same vectors.
    from sklearn.utils.extmath import randomized_svd as sklearn_svd

    from anime_recs.models.base import randomized_svd

    X = sp.random(*shape, density=0.1, random_state=5, format="csr", dtype=dtype)
    for ours, theirs in zip(randomized_svd(X, 16, n_iter=7, seed=3), sklearn_svd(X, 16, n_iter=7, random_state=3)):
        assert ours.dtype == theirs.dtype
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_features_of_some_anime_equal_those_columns_of_every_anime() -> None:
    data = _world(120, 60, 3000)
    parts = nb._Parts(data, build_model({"family": "neighbourhood"}).params)
    users, items = np.array([3, 50, 7]), np.array([59, 0, 12, 31])
    np.testing.assert_allclose(parts.features(users, items), parts.features(users)[:, items], atol=1e-6)


def test_pooled_user_similarities_are_the_exact_ones_within_each_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _world(200, 80, 4000)
    parts = nb._Parts(data, build_model({"family": "neighbourhood"}).params)
    users = np.array([0, 17, 123, 199])
    exact = parts.user_similarities(users)  # 200 users <= the default pool: every user
    assert np.count_nonzero(exact) > 0.5 * exact.size
    parts.user_pool = 30
    monkeypatch.setattr(nb, "_BLOCK_ELEMENTS", 30 * 20 * 2)  # two query users per pass
    pooled = parts.user_similarities(users)
    kept = pooled != 0
    assert kept.sum(axis=1).max() <= 30
    np.testing.assert_allclose(pooled[kept], exact[kept], atol=1e-5)
    # the pool is the users whose factors are closest to the query user's
    closeness = parts.P[users] @ parts.P.T
    closeness[np.arange(len(users)), users] = -np.inf
    for row, user_closeness in zip(kept, closeness):
        assert user_closeness[row].min() >= np.sort(user_closeness)[-30] - 1e-9
