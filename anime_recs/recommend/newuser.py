"""Recommendations for someone the model has never seen, from a rating list or a MyAnimeList export.

Three ways in, one way out:

- :func:`ratings_from_csv`: a CSV with ``anime_id`` (MAL_ID) or ``name`` and ``rating``;
- :func:`ratings_from_mal_xml`: MyAnimeList's XML export (``<myanimelist><anime>`` with
  ``series_animedb_id``, ``my_score`` and ``my_status``). A score of 0 means "not
  rated": such anime are excluded from the recommendations but carry no rating;
- :func:`ratings_from_pairs`: ``(anime, rating)`` pairs, anime by MAL_ID or name.

Whatever the way in, the ratings are checked by one rule (:func:`_resolve`): every rating off the
model's scale (or not a number) is listed in one error; an anime listed twice counts with its last
rating; MAL_IDs the anime table does not hold (anime newer than the data) and anime the model has no
row for are skipped and reported, never an error.

:func:`recommend_new_user` folds the ratings into the model
(:func:`anime_recs.models.foldin.fold_in`), ranks every anime the user did not list
through the same filters as :meth:`AnimeRecommender.recommend_by_model`, and explains
each recommendation by the liked anime closest to it ("like Cowboy Bebop (you: 9)").
"""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

import defusedxml.ElementTree as SafeET
import numpy as np
import pandas as pd
from defusedxml import DefusedXmlException

from anime_recs.core.errors import UserInputError, cut
from anime_recs.core.parsing import as_id, as_int
from anime_recs.models.foldin import fold_in
from anime_recs.recommend.catalogue import check_count
from anime_recs.recommend.recommender import AnimeRecommender

logger = logging.getLogger(__name__)

#: Most ratings one request may carry (a MyAnimeList list is rarely above a few thousand).
MAX_RATINGS = 20_000


@dataclass(frozen=True)
class RatingList:
    """A new user's ratings, anime by MAL_ID or name, on the data's rating scale.

    Attributes:
        anime: MAL_ID (int) or name (str) per rating.
        ratings: The ratings, one per entry of ``anime``.
        also_seen: MAL_IDs listed without a rating (excluded from recommendations only).
    """

    anime: list[int | str]
    ratings: list[float]
    also_seen: list[int] = field(default_factory=list)


def ratings_from_pairs(pairs: Iterable[tuple[int | str, float]]) -> RatingList:
    """A :class:`RatingList` from ``(anime, rating)`` pairs."""
    items = list(pairs)
    if len(items) > MAX_RATINGS:
        raise UserInputError(f"{len(items):,} ratings is too many; send at most {MAX_RATINGS:,}")
    return RatingList([a for a, _ in items], [float(r) for _, r in items])


def id_or_name(text: str) -> int | str:
    """A MAL_ID when ``text`` is an integer (ASCII digits), else the text as a name."""
    value = as_int(text)
    return text if value is None else value


def ratings_from_csv(text: str | bytes) -> RatingList:
    """Parse a rating-list CSV: columns ``anime_id`` (or ``MAL_ID``) or ``name``, and ``rating``.

    Raises:
        UserInputError: unreadable CSV, missing columns, or non-numeric ratings.
    """
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        frame = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserInputError(f"the rating list is not a readable CSV ({cut(str(exc))})") from None
    columns = {c.strip().lower(): c for c in frame.columns}
    key = next((columns[c] for c in ("anime_id", "mal_id", "name") if c in columns), None)
    if key is None or "rating" not in columns:
        raise UserInputError(f"the rating list needs columns anime_id (or name) and rating; it has {list(frame.columns)}")
    values = pd.to_numeric(frame[columns["rating"]].str.strip(), errors="coerce")  # not a number: NaN, listed later
    by_name = key == columns.get("name")
    anime: list[int | str] = [v if by_name else id_or_name(v) for v in frame[key].astype(str)]
    return ratings_from_pairs(zip(anime, values.tolist()))


def ratings_from_mal_xml(data: str | bytes) -> RatingList:
    """Parse a MyAnimeList XML export; ``my_score`` 0 (not rated) only marks the anime as seen.

    Raises:
        UserInputError: not XML, or XML that is not a MyAnimeList anime list.
    """
    try:
        root = SafeET.fromstring(data)  # no entities, no external references, whatever the expat version
    except ET.ParseError as exc:
        raise UserInputError(f"the file is not valid XML ({exc}); export your list from MyAnimeList") from None
    except DefusedXmlException as exc:
        raise UserInputError(f"the XML uses {type(exc).__name__} (entities or external references), which an "
                             "export never does; export your list from MyAnimeList again") from None
    entries = root.findall("anime")
    if root.tag != "myanimelist" or not entries:
        raise UserInputError("the XML is not a MyAnimeList anime list export (<myanimelist> with <anime> entries)")
    anime, ratings, seen = [], [], []
    for entry in entries:
        mal_id, score = entry.findtext("series_animedb_id", ""), entry.findtext("my_score", "0")
        anime_id = as_id(mal_id)
        if anime_id is None:
            raise UserInputError(f"an <anime> entry has series_animedb_id {cut(mal_id)!r}; expected a MAL_ID")
        try:
            value = float(score)
        except ValueError:
            value = float("nan")  # listed with every other bad rating by _resolve
        if value == 0:  # MyAnimeList's "not rated"
            seen.append(anime_id)
        else:
            anime.append(anime_id)
            ratings.append(value)
    if len(anime) > MAX_RATINGS:
        raise UserInputError(f"{len(anime):,} ratings is too many; send at most {MAX_RATINGS:,}")
    return RatingList(anime, ratings, seen)


def _check_scale(rec: AnimeRecommender, ratings: RatingList) -> np.ndarray:
    """The ratings as floats, or one error listing every rating that is not a number on the model's scale."""
    values = np.asarray(ratings.ratings, np.float64)
    lo, hi = rec.model.rating_scale
    bad = np.flatnonzero(~np.isfinite(values) | (values < lo) | (values > hi))
    if len(bad):
        listed = ", ".join(f"{cut(str(ratings.anime[i]), 40)}: {'not a number' if np.isnan(values[i]) else f'{values[i]:g}'}"
                           for i in bad[:10])
        raise UserInputError(f"{len(bad)} rating(s) are not numbers from {lo:g} to {hi:g} ({listed}"
                             f"{', ...' if len(bad) > 10 else ''}); fix them and send the list again")
    return values


#: Names listed in the error about names not found (with their closest matches).
MAX_NAMES_REPORTED = 20


def _resolve_names(rec: AnimeRecommender, names: list[object]) -> dict[object, int]:
    """Each distinct name's MAL_ID; one error listing every name not found, each with its closest matches."""
    resolved: dict[object, int] = {}
    missed: list[str] = []
    for name in dict.fromkeys(names):  # each distinct name once (a list holds at most MAX_RATINGS)
        try:
            resolved[name] = rec.resolve_anime(name)  # type: ignore[arg-type]
        except UserInputError as exc:
            if not isinstance(name, str) or not str(exc).startswith("no anime named"):
                raise  # not a miss (a name too long, not a name at all): as it is
            close = rec.names.suggest(name, 3)  # type: ignore[attr-defined]
            missed.append(f"{cut(name, 60)!r} (" + (", ".join(f"{shown!r} ({mal_id})" for shown, mal_id in close)
                                                     if close else "nothing close") + ")")
    if missed:
        shown = "; ".join(missed[:MAX_NAMES_REPORTED]) + ("; ..." if len(missed) > MAX_NAMES_REPORTED else "")
        raise UserInputError(f"no anime named {shown} ({len(missed)} name(s) not found; closest matches with their "
                             "MAL_ID in brackets): fix the names, or give MAL_IDs, and send the list again")
    return resolved


def _resolve(rec: AnimeRecommender, ratings: RatingList) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Model rows and ratings of the listed anime the model knows; rows of every listed anime; skipped entries."""
    if not ratings.anime:
        raise UserInputError("the rating list is empty; rate at least one anime")
    values = _check_scale(rec, ratings)
    # Ids the anime table lacks (anime newer than the data) are skipped like anime the model lacks; names resolve.
    by_name = _resolve_names(rec, [a for a in ratings.anime if not isinstance(a, int) or isinstance(a, bool)])
    mal_ids = np.array([by_name[a] if a in by_name else a for a in ratings.anime], np.int64)
    in_table = rec.in_catalogue(mal_ids)
    rows = np.where(in_table, rec.anime_encoder.transform(np.where(in_table, mal_ids, 0), missing="minus_one"), -1)
    last = len(mal_ids) - 1 - np.unique(mal_ids[::-1], return_index=True)[1]  # an anime listed twice: its last rating
    kept = np.zeros(len(mal_ids), bool)
    kept[last] = True
    known = (rows >= 0) & kept
    skipped = [str(a) for a, ok, first in zip(ratings.anime, rows >= 0, kept) if first and not ok]
    if not known.any():
        raise UserInputError("the model knows none of the rated anime (too few ratings in training); rate more popular anime")
    seen_ids = np.asarray(ratings.also_seen, np.int64)
    seen_rows = rec.anime_encoder.transform(seen_ids, missing="minus_one") if len(seen_ids) else np.empty(0, np.int64)
    listed = np.concatenate([rows[known], seen_rows[seen_rows >= 0]]).astype(np.int64)
    return rows[known].astype(np.int64), values[known], listed, skipped


def recommend_new_user(
    rec: AnimeRecommender,
    ratings: RatingList,
    n: int = 10,
    genres: str | Iterable[str] | None = None,
    types: str | Iterable[str] | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
) -> pd.DataFrame:
    """The anime a new user (known only by ``ratings``) should watch next.

    Args:
        rec: The recommender over a fitted model.
        ratings: The user's ratings (raw scale) and other listed anime.
        n: How many.
        genres, types, min_score, max_score: Filters as in :meth:`AnimeRecommender.recommend_by_model`.

    Returns:
        Columns ``MAL_ID, Name, Predicted rating, Rank score, Explanation``, then the
        metadata columns; best first. ``attrs`` holds ``used`` (ratings folded in) and
        ``skipped`` (listed anime the model has no row for).

    Raises:
        UserInputError: empty list, unknown anime/genre/type, ratings off the scale, bad ``n``.
    """
    n = check_count(n, "n")
    rows, values, listed, skipped = _resolve(rec, ratings)
    scored = fold_in(rec.model, rows, values)
    frame = rec.recommend_for_fold_in(scored, rows, values, listed, n, genres, types, min_score, max_score)
    frame.attrs["skipped"] = skipped
    return frame
