"""Approximate similar-users search (anime_recs.serve.ann) against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from anime_recs.models import Interactions, build_model
from anime_recs.serve.ann import IndexedRecommender, UserIndex
from tests.test_models import FAMILY_CONFIGS, WORLD

pytest.importorskip("faiss")


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("layout", ["clustered", "uniform"])
def test_index_recall_and_exact_scores(layout: str) -> None:
    rng = np.random.default_rng(0)
    if layout == "clustered":
        centres = rng.standard_normal((50, 33))  # odd width: the quantiser pads one zero column
        vectors = _unit(centres[rng.integers(50, size=8000)] + 0.5 * rng.standard_normal((8000, 33)))
    else:  # no structure at all: the hardest case for any index
        vectors = _unit(rng.standard_normal((8000, 32)))
    index = UserIndex(vectors, candidates=200)
    assert index.index is not None  # 8000 users > 200 candidates: the shortlist really is approximate
    assert index.recall(rng.choice(8000, 100, replace=False), 10) >= 0.98
    rows, scores = index.search(7, 10)
    assert 7 not in rows and len(rows) == 10 and np.all(np.diff(scores) <= 0)
    np.testing.assert_allclose(scores, vectors[rows] @ vectors[7], rtol=1e-5)  # re-ranked: exact cosines


def test_few_users_are_searched_exhaustively() -> None:
    vectors = _unit(np.random.default_rng(1).standard_normal((30, 8)))
    index = UserIndex(vectors, candidates=100)
    assert index.index is None and index.recall(np.arange(30), 10) == 1.0
    rows, _ = index.search(0, 50)
    assert sorted(rows.tolist()) == list(range(1, 30))  # everyone but the user, no padding


def test_indexed_recommender_matches_exact_search() -> None:
    model = build_model(FAMILY_CONFIGS["ease"]).fit(Interactions.from_frame(WORLD.raw, (1.0, 10.0)))
    rec = IndexedRecommender(model=model, ratings=WORLD.raw, anime=WORLD.anime)
    exact = [rec.similar_user_ids(u, 5)[0].tolist() for u in WORLD.user_ids[:10].tolist()]
    assert rec.attach_if_accurate() is None and rec.user_index is None  # 36 users: too few to need an index
    assert rec.attach_if_accurate(min_users=0) == 1.0 and rec.user_index is not None
    approx = [rec.similar_user_ids(u, 5)[0].tolist() for u in WORLD.user_ids[:10].tolist()]
    assert approx == exact
    assert rec.similar_user_ids(int(WORLD.user_ids[0]), 5, exact=True)[0].tolist() == exact[0]
    assert len(rec.similar_users(int(WORLD.user_ids[0]), 5)) == 5
