"""The JSON every front end answers with: one documented schema, snake_case keys.

The recommender's tables keep the original project's column names (``MAL_ID``, ``Predicted rating``), which the
step CSVs show as they were. At the JSON boundary (the HTTP API, ``anime-recs ... --json``, the pyfunc model)
:func:`json_rows` turns each column name into snake_case (:func:`json_key`), the comma-joined genres into a list
and the data's ``Unknown`` markers into ``null``. The pydantic models below are that schema: the API declares them
as its responses (OpenAPI at ``/docs``, checked by schemathesis), and the tests validate the CLI's and the pyfunc's
output against them. ``docs/api.md`` lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

#: What the data write for a value they do not have.
UNKNOWN = "Unknown"
#: Columns whose JSON value is a list of strings (the data join them with ", ").
LIST_COLUMNS = ("Genres",)
#: Columns whose JSON value is a number, ``null`` when the data say ``Unknown``.
NUMBER_COLUMNS = ("Episodes", "Score", "Members")


def json_key(column: str) -> str:
    """A column name in snake_case: ``"Predicted rating"`` -> ``predicted_rating``, ``MAL_ID`` -> ``mal_id``."""
    return re.sub(r"[^0-9a-z]+", "_", str(column).lower()).strip("_")


def _split_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip() and part.strip() != UNKNOWN]


def _json_value(column: str, value: Any) -> Any:
    if column in LIST_COLUMNS:
        return _split_list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if column in NUMBER_COLUMNS and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None  # "Unknown"
        return int(number) if number.is_integer() and column != "Score" else number
    if isinstance(value, str) and value == UNKNOWN:
        return None
    return value


def json_rows(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Rows of ``frame`` (the ``columns`` it has, in that order) as JSON-ready dicts with snake_case keys.

    Column by column (``Series.tolist`` gives Python scalars): ``DataFrame.to_dict("records")``
    costs ~20 ms on ten rows of arrow-backed strings, more than the query itself.
    """
    names = [c for c in (frame.columns if columns is None else columns) if c in frame.columns]
    values = [[_json_value(name, v) for v in frame[name].tolist()] for name in names]
    keys = [json_key(name) for name in names]
    return [dict(zip(keys, row)) for row in zip(*values)] if names else [{} for _ in range(len(frame))]


class Strict(BaseModel):
    """A response object: no key outside the schema."""

    model_config = ConfigDict(extra="forbid")


class AnimeRef(Strict):
    """The anime a question was about."""

    mal_id: int
    name: str


class AnimeResult(Strict):
    """One anime in an answer: what it is, and the numbers it was chosen by."""

    mal_id: int = Field(description="MyAnimeList id")
    name: str
    english_name: str | None = None
    genres: list[str] = Field(default_factory=list)
    type: str | None = Field(None, description="TV, Movie, OVA, Special, ONA, Music")
    episodes: int | None = None
    score: float | None = Field(None, description="MyAnimeList score (the site's users, not the model)")
    source: str | None = Field(None, description="manga, original, light novel ...")
    members: int | None = None
    synopsis: str | None = None
    similarity: float | None = Field(None, description="similar anime: cosine similarity to the query")
    match: float | None = Field(None, description="recommendations: 0-100, the share of the anime you could watch ranked "
                                                  "lower; the list is ordered by it")
    predicted_rating: float | None = Field(None, description="recommendations: the rating you would give, on the data's scale")
    rank_score: float | None = Field(None, description="recommendations: the model's raw ranking score")
    explanation: str | None = Field(None, description="why it was recommended")
    n_similar_users: int | None = Field(None, description="similar-user recommendations: how many of them favour it")


class Answer(Strict):
    """What every answer about anime or users carries: the model version that answered, and a note when it is short."""

    version: str = Field(description="the model version that answered")
    note: str | None = None


class SimilarAnimeAnswer(Answer):
    query: AnimeRef
    results: list[AnimeResult]


class RecommendationsAnswer(Answer):
    query_user: int
    family: str = Field(description="the model family that ranked")
    results: list[AnimeResult]


class NewUserAnswer(Answer):
    family: str
    used: int = Field(description="how many of the ratings were folded in")
    skipped: list[str] = Field(description="listed anime the model has no row for (newer than its data)")
    results: list[AnimeResult]


class SimilarUserRecommendationsAnswer(Answer):
    query_user: int
    results: list[AnimeResult]


class SimilarUser(Strict):
    user_id: int
    similarity: float
    n_ratings: int
    favorite_ids: list[int]
    favorite_names: list[str]


class SimilarUsersAnswer(Answer):
    query_user: int
    results: list[SimilarUser]


class Favorite(Strict):
    mal_id: int
    name: str
    eng_version: str | None = None
    user_rating: float
    genres: list[str] = Field(default_factory=list)
    source: str | None = None
    type: str | None = None


class PreferencesAnswer(Strict):
    version: str
    user_id: int
    threshold: float = Field(description="ratings at or above this are favourites")
    favorites: list[Favorite]
    genres: dict[str, int] = Field(description="genre -> how many favourites have it")
    sources: dict[str, int]


class NameMatch(Strict):
    mal_id: int
    name: str
    type: str | None = None
    match: str = Field(description="the name (any of its names) that matched what was typed")


class SearchAnswer(Strict):
    version: str
    results: list[NameMatch]


class UserIndex(Strict):
    used: bool
    recall_at_10: float | None = None


class InfoAnswer(Strict):
    version: str
    family: str
    users: int
    anime: int
    genres: list[str]
    types: list[str]
    rating_scale: list[float]
    user_index: UserIndex


class PyfuncRow(Strict):
    """One row the MLflow pyfunc model returns (``mlflow models serve``: one JSON object per row)."""

    query: str
    rank: int
    id: int
    name: str
    score: float | None
    predicted_rating: float | None
    explanation: str
    genres: str
    type: str


#: Each answer of :class:`~anime_recs.serve.service.Service` and its schema, for the docs and the tests.
ANSWERS: dict[str, type[Strict]] = {
    "similar_anime": SimilarAnimeAnswer, "recommend": RecommendationsAnswer, "new_user": NewUserAnswer,
    "recommend_from_similar_users": SimilarUserRecommendationsAnswer, "similar_users": SimilarUsersAnswer,
    "preferences": PreferencesAnswer, "search": SearchAnswer, "info": InfoAnswer,
}
