"""MyAnimeList API v2 JSON → the exact columns and spellings of the pipeline's raw files.

The 2020 files (``anime.csv``, ``anime_with_synopsis.csv``, ``animelist.csv``) were
scraped from the website; the API names the same facts differently (``media_type``
``tv`` is the website's ``TV``, ``source`` ``light_novel`` is ``Light novel``,
``rating`` ``pg_13`` is ``PG-13 - Teens 13 or older``, list status ``on_hold`` is
code 3). Facts the API does not offer (producers, licensors, favourites, the
per-score vote counts) are ``Unknown``, the original's marker for missing values.
"""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from anime_recs.data.files import ANIME_COLUMNS, STATS_COLUMNS, STATS_DTYPES, SYNOPSES_COLUMNS, UNKNOWN

logger = logging.getLogger(__name__)

# The fields requested from GET /anime/{id}.
ANIME_FIELDS = ",".join((
    "id", "title", "alternative_titles", "start_date", "end_date", "synopsis", "mean", "rank", "popularity",
    "num_list_users", "num_scoring_users", "nsfw", "media_type", "status", "genres", "num_episodes",
    "start_season", "source", "average_episode_duration", "rating", "studios", "statistics",
))  # fmt: skip
MEDIA_TYPES = {
    "tv": "TV", "movie": "Movie", "ova": "OVA", "special": "Special", "ona": "ONA", "music": "Music",
    "tv_special": "Special",  # split from "special" by MyAnimeList after 2020
}  # fmt: skip
SOURCES = {
    "original": "Original", "manga": "Manga", "4_koma_manga": "4-koma manga", "web_manga": "Web manga",
    "digital_manga": "Digital manga", "novel": "Novel", "light_novel": "Light novel", "visual_novel": "Visual novel",
    "game": "Game", "card_game": "Card game", "book": "Book", "picture_book": "Picture book", "radio": "Radio",
    "music": "Music", "other": "Other", "web_novel": "Web novel", "mixed_media": "Mixed media",
}  # fmt: skip
RATINGS = {
    "g": "G - All Ages", "pg": "PG - Children", "pg_13": "PG-13 - Teens 13 or older",
    "r": "R - 17+ (violence & profanity)", "r+": "R+ - Mild Nudity", "rx": "Rx - Hentai",
}  # fmt: skip
LIST_STATUS = {"watching": 1, "completed": 2, "on_hold": 3, "dropped": 4, "plan_to_watch": 6}
STATISTICS = {"Watching": "watching", "Completed": "completed", "On-Hold": "on_hold", "Dropped": "dropped",
              "Plan to Watch": "plan_to_watch"}
MAL_REWRITE = re.compile(r"\s*\[Written by MAL Rewrite\]\s*$")


def _text(value: Any) -> str:
    """A non-empty string or ``Unknown``."""
    text = str(value).strip() if value is not None else ""
    return text or UNKNOWN


def _count(value: Any) -> int | str:
    """An integer count (the API sends some as strings) or ``Unknown``."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return UNKNOWN


def _names(items: Any) -> str:
    """``"A, B"`` from ``[{"name": "B"}, {"name": "A"}]`` (sorted, as the original's genre lists)."""
    names = sorted({str(item["name"]) for item in items or () if isinstance(item, dict) and item.get("name")})
    return ", ".join(names) or UNKNOWN


def format_date(value: str | None) -> str:
    """``2021-04-09`` → ``Apr 9, 2021``; ``2021-04`` → ``Apr, 2021``; ``2021`` → ``2021`` (the website's form)."""
    if not value:
        return "?"
    parts = str(value).split("-")
    try:
        year = int(parts[0])
        if len(parts) == 1:
            return str(year)
        month = date(year, int(parts[1]), 1).strftime("%b")
        return f"{month}, {year}" if len(parts) == 2 else f"{month} {int(parts[2])}, {year}"
    except ValueError:
        return "?"


def format_aired(node: dict[str, Any]) -> str:
    """The ``Aired`` column: ``Apr 3, 1998 to Apr 24, 1999``, ``Sep 17, 2016`` or ``Apr, 2021 to ?``."""
    start, end = node.get("start_date"), node.get("end_date")
    if not start:
        return UNKNOWN
    if end == start or (not end and node.get("status") == "finished_airing"):
        return format_date(start)
    return f"{format_date(start)} to {format_date(end)}"


def format_duration(seconds: Any, episodes: Any) -> str:
    """The ``Duration`` column: ``24 min. per ep.``, ``2 hr. 10 min.``, ``30 sec.``."""
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return UNKNOWN
    if total <= 0:
        return UNKNOWN
    hours, minutes, secs = total // 3600, total % 3600 // 60, total % 60
    # Seconds only show for clips under a minute (the 2020 file has no "min. … sec.").
    parts = [f"{hours} hr."] * bool(hours) + [f"{minutes} min."] * bool(minutes) + [f"{secs} sec."] * bool(total < 60)
    return " ".join(parts) + ("" if episodes == 1 else " per ep.")


def anime_row(node: dict[str, Any]) -> dict[str, Any]:
    """One ``all_anime`` row (every column of :data:`anime_recs.data.files.ANIME_COLUMNS`) from an anime's details."""
    titles = node.get("alternative_titles") or {}
    media_type = str(node.get("media_type") or "")
    episodes = _count(node.get("num_episodes"))
    season = node.get("start_season") or {}
    status = (node.get("statistics") or {}).get("status") or {}
    mean = node.get("mean")
    rank = _count(node.get("rank"))
    row: dict[str, Any] = {
        "MAL_ID": int(node["id"]),
        "Name": _text(node.get("title")),
        "Score": round(float(mean), 2) if isinstance(mean, int | float) and mean > 0 else UNKNOWN,
        "Genres": _names(node.get("genres")),
        "English name": _text(titles.get("en")),
        "Japanese name": _text(titles.get("ja")),
        "Type": MEDIA_TYPES.get(media_type, UNKNOWN),
        "Episodes": episodes if isinstance(episodes, int) and episodes > 0 else UNKNOWN,
        "Aired": format_aired(node),
        # The website shows "Premiered" for TV series only.
        "Premiered": f"{str(season['season']).capitalize()} {int(season['year'])}"
        if media_type == "tv" and season.get("season") and season.get("year") else UNKNOWN,
        "Producers": UNKNOWN,
        "Licensors": UNKNOWN,
        "Studios": _names(node.get("studios")),
        "Source": SOURCES.get(str(node.get("source") or ""), UNKNOWN),
        "Duration": format_duration(node.get("average_episode_duration"), episodes),
        "Rating": RATINGS.get(str(node.get("rating") or ""), UNKNOWN),
        "Ranked": f"{rank}.0" if isinstance(rank, int) and rank > 0 else UNKNOWN,
        "Popularity": _count(node.get("popularity")),
        "Members": _count(node.get("num_list_users")),
        "Favorites": UNKNOWN,
        **{column: _count(status.get(key)) for column, key in STATISTICS.items()},
    }
    for column in ANIME_COLUMNS:
        row.setdefault(column, UNKNOWN)  # Score-10 … Score-1: not in the API
    return row


def clean_synopsis(text: Any) -> str:
    """The synopsis as one paragraph without MyAnimeList's ``[Written by MAL Rewrite]`` trailer."""
    return " ".join(MAL_REWRITE.sub("", str(text or "")).split())


def anime_frames(nodes: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``all_anime`` and ``synopses`` tables from anime details, sorted by ``MAL_ID``."""
    rows = [anime_row(node) for node in nodes]
    anime = pd.DataFrame(rows, columns=list(ANIME_COLUMNS)).astype(object)
    anime["sypnopsis"] = [clean_synopsis(node.get("synopsis")) for node in nodes]  # (sic) the original's column name
    anime = anime.drop_duplicates("MAL_ID", keep="last").sort_values("MAL_ID", kind="stable").reset_index(drop=True)
    synopses = anime[list(SYNOPSES_COLUMNS)].copy()
    return anime.drop(columns="sypnopsis"), synopses


def list_rows(user_id: int, entries: list[dict[str, Any]]) -> tuple[list[list[int]], int]:
    """``[anime_id, rating, watching_status, watched_episodes]`` rows of one user's list.

    Returns:
        The rows, and how many entries were left out for an unknown status.
    """
    rows, unknown = [], 0
    for entry in entries:
        status = (entry.get("list_status") or {})
        code = LIST_STATUS.get(str(status.get("status")))
        if code is None:
            unknown += 1
            continue
        rows.append([int(entry["node"]["id"]), int(status.get("score") or 0), code, int(status.get("num_episodes_watched") or 0)])
    return rows, unknown


def stats_frame(user_ids: list[int], rows: list[list[list[int]]]) -> pd.DataFrame:
    """The ``user_stats`` table from each user's list rows; one row per (user, anime)."""
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = np.array([row for user_rows in rows for row in user_rows], dtype=np.int64).reshape(-1, 4)
    frame = pd.DataFrame({"user_id": np.repeat(np.asarray(user_ids, dtype=np.int64), counts)})
    for i, column in enumerate(STATS_COLUMNS[1:]):
        frame[column] = flat[:, i]
    frame = frame.astype(STATS_DTYPES)
    # A list edited between two pages can show an entry twice; the later page wins.
    frame = frame.drop_duplicates(["user_id", "anime_id"], keep="last")
    return frame.sort_values(["user_id", "anime_id"], kind="stable").reset_index(drop=True)
