"""One loaded model version and the questions it answers, as JSON-ready tables.

:class:`Service` wraps an :class:`~anime_recs.recommend.AnimeRecommender` built from a
model folder and the data it was trained on, and answers every query the CLI
(:mod:`anime_recs.cli.query`), the HTTP API (:mod:`anime_recs.serve.app`) and the MLflow
pyfunc model (:mod:`anime_recs.serve.pyfunc`) offer, so all three return the same
rows. :func:`load_service` reads a model version and its inputs from the artifact
store; nothing here imports TensorFlow or MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.core.errors import UserInputError
from anime_recs.core.options import answer_defaults
from anime_recs.recommend import AnimeRecommender
from anime_recs.recommend.loader import MODEL_ARTIFACT, ModelVersion, open_model_version
from anime_recs.recommend.newuser import RatingList, recommend_new_user
from anime_recs.serve.schema import json_rows

logger = logging.getLogger(__name__)

#: Each question's defaults (how many results, ...), from the step options in config/config.yaml.
DEFAULTS = answer_defaults()
#: The largest ``n`` any query accepts (a page of results, not a dump of the catalogue).
MAX_N = 500
#: Columns of anime rows returned to clients (the synopsis is long: the page shows it on demand).
ANIME_COLUMNS = ("MAL_ID", "Name", "English name", "Genres", "Type", "Episodes", "Score", "Source", "Members", "Synopsis")


def check_n(n: object) -> int:
    """``n`` as an int in 1..MAX_N, or a one-line error."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= MAX_N:
        raise UserInputError(f"n must be an integer from 1 to {MAX_N}, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class Service:
    """A model version ready to answer queries.

    Attributes:
        rec: The recommender over the model and its data.
        version: Which model version this is (``anime_nn_embeddings:v3`` or a folder).
    """

    rec: AnimeRecommender
    version: str

    @classmethod
    def from_files(cls, model_dir: Path, ratings: Path, anime: Path, synopses: Path | None, version: str) -> Service:
        """Build from a saved model folder and the data files it was trained on (the pyfunc model)."""
        return cls.from_version(ModelVersion.from_files(model_dir, ratings, anime, synopses, version, mmap=True))

    @classmethod
    def from_version(cls, opened: ModelVersion) -> Service:
        """Serve an opened model version (similar users through the quantised index where it is accurate)."""
        from anime_recs.serve.ann import IndexedRecommender

        rec = opened.recommender(IndexedRecommender)
        rec.attach_if_accurate()  # large user sets only, and only when its measured recall@10 is high enough
        return cls(rec, opened.ref)

    # -- queries: each returns a dict ready for JSON ------------------------------------------
    def similar_anime(self, anime: int | str, n: int = DEFAULTS["similar_anime"], genres: list[str] | None = None,
                      types: list[str] | None = None) -> dict[str, Any]:
        """Anime most similar to ``anime`` (MAL_ID or forgiving name)."""
        frame = self.rec.similar_anime(anime, check_n(n), genres=genres or None, types=types or None)
        return self._answer(frame, ["Similarity"], query={"mal_id": int(frame.attrs["query_id"]), "name": frame.attrs["query_name"]})

    def similar_users(self, user: int, n: int = DEFAULTS["similar_users"], num_faves: int = DEFAULTS["num_faves"]) -> dict[str, Any]:
        """Users most similar to ``user``, with their favourites."""
        frame = self.rec.similar_users(user, check_n(n), num_faves=check_n(num_faves))
        return {"version": self.version, "query_user": int(frame.attrs["query_user"]), "note": frame.attrs.get("note"),
                "results": json_rows(frame, ["user_id", "Similarity", "n_ratings", "favorite_ids", "favorite_names"])}

    def recommend(self, user: int, n: int = DEFAULTS["recommend"], genres: list[str] | None = None, types: list[str] | None = None,
                  min_score: float | None = None, max_score: float | None = None) -> dict[str, Any]:
        """The model's recommendations for a known user."""
        frame = self.rec.recommend_by_model(user, check_n(n), types=types or None, genres=genres or None,
                                            min_score=min_score, max_score=max_score)
        return self._answer(frame, ["Match", "Predicted rating", "Rank score"], query_user=int(frame.attrs["query_user"]),
                            family=frame.attrs["model_family"])

    def recommend_from_similar_users(self, user: int, n: int = DEFAULTS["similar_user_recs"],
                                     n_similar: int = DEFAULTS["n_similar"],
                                     genres: list[str] | None = None) -> dict[str, Any]:
        """Unseen anime the similar users favour ("7 of 10 similar users")."""
        frame = self.rec.recommend_from_similar_users(user, check_n(n), n_similar=check_n(n_similar), genres=genres or None)
        return self._answer(frame, ["n_similar_users", "Explanation"], query_user=int(frame.attrs["query_user"]))

    def preferences(self, user: int, favorite_percentile: float = DEFAULTS["favorite_percentile"]) -> dict[str, Any]:
        """A user's favourite anime, genres and sources."""
        prefs = self.rec.user_preferences(user, favorite_percentile)
        return {"version": self.version, "user_id": prefs.user_id, "threshold": prefs.threshold,
                "favorites": json_rows(prefs.favorites, ["MAL_ID", "Name", "eng_version", "user_rating", "Genres", "Source", "Type"]),
                "genres": {str(k): int(v) for k, v in prefs.genres.items()},
                "sources": {str(k): int(v) for k, v in prefs.sources.items()}}

    def new_user(self, ratings: RatingList, n: int = DEFAULTS["recommend"], genres: list[str] | None = None, types: list[str] | None = None,
                 min_score: float | None = None, max_score: float | None = None) -> dict[str, Any]:
        """Recommendations for someone known only by their ratings (fold-in)."""
        frame = recommend_new_user(self.rec, ratings, check_n(n), genres=genres or None, types=types or None,
                                   min_score=min_score, max_score=max_score)
        return self._answer(frame, ["Match", "Predicted rating", "Rank score", "Explanation"], used=int(frame.attrs["used"]),
                            skipped=frame.attrs["skipped"], family=frame.attrs["model_family"])

    def search(self, query: str, n: int = 8) -> dict[str, Any]:
        """Anime names matching what was typed so far (word starts first, then close spellings)."""
        found = pd.DataFrame(self.rec.name_suggestions(query, check_n(n)), columns=["MAL_ID", "Name", "Type", "match"])
        return {"version": self.version, "results": json_rows(found)}

    def info(self) -> dict[str, Any]:
        """What is loaded: version, family, sizes, genres and types (for the page's filters)."""
        return {"version": self.version, "family": self.rec.model.family, "users": self.rec.n_users,
                "anime": self.rec.n_anime, "genres": list(self.rec.genres), "types": list(self.rec.types),
                "rating_scale": [float(v) for v in self.rec.rating_scale],
                # similar users through the quantised index (when its recall@10 measured at load was high enough)
                "user_index": {"used": getattr(self.rec, "user_index", None) is not None,
                               "recall_at_10": getattr(self.rec, "user_index_recall", None)}}

    def _answer(self, frame: pd.DataFrame, computed: list[str], **extra: Any) -> dict[str, Any]:
        columns = ["MAL_ID", "Name", *computed, *[c for c in ANIME_COLUMNS if c not in ("MAL_ID", "Name")]]
        return {"version": self.version, **extra, "note": frame.attrs.get("note"), "results": json_rows(frame, columns)}


def load_service(root: Path | str | None = None, model: str | None = None) -> Service:
    """The newest (or the named) model version with the ratings, anime table and synopses it was published with.

    Raises:
        UserInputError: no model published yet, an unknown version, or damaged files.
    """
    store = ArtifactStore(root)
    if store.latest_version(MODEL_ARTIFACT) is None:
        raise UserInputError(f"no model in the artifact store {store.root}; run ./run.sh (or the neural_network step) first")
    return Service.from_version(open_model_version(store.get, model, mmap=True))
