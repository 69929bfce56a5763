"""Offline evaluation of recommenders under one fixed, reproducible protocol.

The protocol (so that numbers from different runs and machines are comparable):

1. Keep rated interactions only (``rating >= min_rating``; 1 on MyAnimeList, where
   0 means "not rated"), then users with at least ``min_ratings`` ratings.
2. Sort the rows by (user, item). One ``numpy.random.default_rng(seed)`` walks the
   users in ascending id order; for a user with ``n`` rows it draws
   ``rng.choice(n, size=max(1, int(round(test_fraction * n))), replace=False)``
   positions among that user's item-sorted rows into TEST; the rest is TRAIN.
   :func:`split_checksum` fingerprints TEST so anyone can confirm the same split.
3. Rating metrics on TEST (RMSE, MAE) on the data's original scale.
4. Ranking metrics for every user with at least one relevant TEST item: score every
   TRAIN item the user has not rated in TRAIN, take the top ``k`` (ties to the lower
   item id), and average Precision, Recall, nDCG and MAP at ``k``; catalogue
   coverage is the share of TRAIN items that reach at least one user's top ``k``.
5. Fit time and peak resident memory of every model.

Modules: :mod:`.split` (the protocol split), :mod:`.metrics`, :mod:`.baselines`
(the small :class:`Recommender` protocol and GlobalMean / Popularity / UserItemBias),
:mod:`.adapters` (our model families and the similar-users recommender, exactly as
served), :mod:`.runner` (fitting side by side, peak memory, markdown). Third-party
peers (Surprise, implicit, EASE) are wrapped in ``bench/peers.py``.
"""

from anime_recs.evaluation.adapters import FamilyModel, SimilarUsersModel, placeholder_catalogue
from anime_recs.evaluation.baselines import GlobalMean, Popularity, Recommender, UserItemBias
from anime_recs.evaluation.metrics import DEFAULT_BATCH_ELEMENTS, ranking_metrics, rating_metrics
from anime_recs.evaluation.runner import PeakRss, evaluate_models, to_markdown
from anime_recs.evaluation.split import DEFAULT_COLUMNS, Columns, Split, protocol_split, split_checksum, validation_split

__all__ = [
    "DEFAULT_BATCH_ELEMENTS", "DEFAULT_COLUMNS", "Columns", "FamilyModel", "GlobalMean", "PeakRss", "Popularity",
    "Recommender", "SimilarUsersModel", "Split", "UserItemBias", "evaluate_models", "placeholder_catalogue",
    "protocol_split", "ranking_metrics", "rating_metrics", "split_checksum", "to_markdown", "validation_split",
]
