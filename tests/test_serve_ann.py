"""Approximate similar-users search (anime_recs.serve.ann) against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from anime_recs.models import Interactions, build_model
from anime_recs.serve.ann import IndexedRecommender, UserIndex
from tests.test_models import FAMILY_CONFIGS, WORLD

pytest.importorskip("faiss")


def test_index_recall_on_clustered_vectors() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32))
    vectors = centres[rng.integers(50, size=5000)] + 0.5 * rng.standard_normal((5000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index = UserIndex(vectors)
    assert index.recall(rng.choice(5000, 100, replace=False), 10) >= 0.98
    rows, scores = index.search(7, 10)
    assert 7 not in rows and np.all(np.diff(scores) <= 1e-6)


def test_indexed_recommender_matches_exact_search() -> None:
    model = build_model(FAMILY_CONFIGS["ease"]).fit(Interactions.from_frame(WORLD.raw, (1.0, 10.0)))
    rec = IndexedRecommender(model=model, ratings=WORLD.raw.assign(rating=(WORLD.raw["rating"] - 1) / 9), anime=WORLD.anime)
    exact = [rec.similar_user_ids(u, 5)[0].tolist() for u in WORLD.user_ids[:10].tolist()]
    rec.attach_user_index()
    approx = [rec.similar_user_ids(u, 5)[0].tolist() for u in WORLD.user_ids[:10].tolist()]
    assert approx == exact  # 36 users: the graph search is exhaustive
    assert rec.similar_user_ids(int(WORLD.user_ids[0]), 5, exact=True)[0].tolist() == exact[0]
    assert len(rec.similar_users(int(WORLD.user_ids[0]), 5)) == 5
