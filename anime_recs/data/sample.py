"""The embedded default data set: a deterministic MyAnimeList-shaped generator.

``make_sample(n_users, n_anime, seed)`` returns ``all_anime``, ``synopses`` and
``stats`` frames with every column of the real files. Anime belong to latent
"taste clusters", each tied to a few genres; users like one or two clusters. So
anime of a cluster share genres, users of a cluster share favourites, and the
recommenders' answers can be checked (a good model puts an anime's neighbours
in its own cluster). ``rating`` is 0 for unrated rows, as on MyAnimeList.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anime_recs.data.files import ANIME_COLUMNS

logger = logging.getLogger(__name__)

GENRES = (
    "Action", "Adventure", "Comedy", "Drama", "Fantasy", "Romance", "Sci-Fi", "Slice of Life",
    "Mystery", "Horror", "Sports", "Music", "Mecha", "Supernatural", "School", "Shounen",
    "Shoujo", "Seinen", "Psychological", "Historical", "Military", "Magic", "Space", "Vampire",
)  # fmt: skip
# Each taste cluster is tied to a few genres; users like one or two clusters.
CLUSTER_GENRES = (
    ("Action", "Shounen", "Adventure"),
    ("Romance", "Shoujo", "School"),
    ("Sci-Fi", "Mecha", "Space"),
    ("Comedy", "Slice of Life", "School"),
    ("Horror", "Mystery", "Psychological"),
    ("Fantasy", "Magic", "Adventure"),
    ("Sports", "Drama", "Seinen"),
    ("Supernatural", "Vampire", "Historical"),
)
TYPES = ("TV", "Movie", "OVA", "Special", "ONA", "Music")
TYPE_WEIGHTS = (0.42, 0.15, 0.14, 0.12, 0.12, 0.05)
SOURCES = ("Manga", "Original", "Light novel", "Visual novel", "Novel", "Web manga", "Game", "4-koma manga", "Other")
SOURCE_WEIGHTS = (0.34, 0.22, 0.12, 0.07, 0.06, 0.05, 0.06, 0.04, 0.04)
SYLLABLES = ("ka", "ri", "to", "mi", "na", "sho", "yu", "ki", "ha", "ru", "se", "no", "ai", "ren", "da", "ko", "su", "ma", "ji", "tsu")
KATAKANA = ("カ", "リ", "ト", "ミ", "ナ", "ショ", "ユ", "キ", "ハ", "ル", "セ", "ノ", "アイ", "レン", "ダ", "コ", "ス", "マ", "ジ", "ツ")
WORDS = ("Stars", "Hearts", "Blade", "Academy", "Chronicle", "Garden", "Legend", "Signal", "Horizon", "Requiem")
# A few real-looking names exercise the forgiving name lookup (accents, symbols).
SPECIAL_NAMES = ("Rental Magica", "Silent Möbius", "Kūkan☆Rondo", "Hoshi no Koe♥", "Café Étoile: Re;Start")


@dataclass(frozen=True)
class SampleData:
    """The three generated tables plus the hidden truth used by tests."""

    all_anime: pd.DataFrame
    synopses: pd.DataFrame
    stats: pd.DataFrame
    anime_cluster: np.ndarray  # cluster of each anime, aligned with all_anime rows
    user_cluster: np.ndarray  # main cluster of each user id 0..n_users-1


def _names(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique romaji-like names and matching katakana names."""
    parts = rng.integers(0, len(SYLLABLES), size=(n, 3))
    words = rng.integers(0, len(WORDS), size=n)
    syllables = np.array(SYLLABLES, dtype=object)
    kana = np.array(KATAKANA, dtype=object)
    stems = syllables[parts[:, 0]] + syllables[parts[:, 1]] + syllables[parts[:, 2]]
    names = np.char.capitalize(stems.astype(str)).astype(object) + " " + np.array(WORDS, dtype=object)[words]
    japanese = kana[parts[:, 0]] + kana[parts[:, 1]] + kana[parts[:, 2]]
    # Disambiguate repeats the way MyAnimeList does for sequels.
    counts = pd.Series(names).groupby(names).cumcount().to_numpy()
    suffix = np.where(counts > 0, " " + (counts + 1).astype(str), "")
    names = names + suffix
    japanese = japanese + suffix
    k = min(len(SPECIAL_NAMES), n)
    names[:k] = SPECIAL_NAMES[:k]
    return names.astype(str), japanese.astype(str)


def _episodes(rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
    """Episode counts by type (NaN for a few still-airing shows)."""
    n = len(types)
    tv = rng.choice([12, 13, 24, 25, 26, 50, 1], size=n, p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05])
    small = rng.integers(1, 7, size=n)
    episodes = np.select(
        [types == "TV", types == "Movie", types == "Music", types == "ONA"],
        [tv, np.ones(n), np.ones(n), rng.integers(1, 13, size=n)],
        default=small,
    ).astype(float)
    episodes[rng.random(n) < 0.02] = np.nan
    return episodes


def _anime_genres(rng: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
    """Genre strings: two or three of the cluster's genres plus up to one other."""
    n = len(clusters)
    cluster_genres = np.array([list(g) for g in CLUSTER_GENRES], dtype=object)
    keep = rng.random((n, 3)) < np.array([1.0, 0.85, 0.6])
    extra = rng.integers(0, len(GENRES), size=n)
    has_extra = rng.random(n) < 0.35
    out = []
    genre_order = {g: i for i, g in enumerate(GENRES)}
    for c, k, e, h in zip(clusters, keep, extra, has_extra, strict=True):  # n_anime is small
        chosen = {g for g, flag in zip(cluster_genres[c], k, strict=True) if flag}
        if h:
            chosen.add(GENRES[e])
        out.append(", ".join(sorted(chosen, key=genre_order.__getitem__)))
    return np.array(out, dtype=object)


def make_sample(n_users: int = 2000, n_anime: int = 800, mean_items: int = 90, seed: int = 42) -> SampleData:
    """Generate the default data set (deterministic for a given seed and size).

    Args:
        n_users: number of users (ids 0..n_users-1, as MyAnimeList's anonymised ids).
        n_anime: number of anime; MAL_IDs are increasing but not contiguous.
        mean_items: mean number of list entries per user (heavy-tailed).
        seed: random seed; the same arguments always give identical frames.

    Returns:
        The three tables and the hidden cluster assignments.
    """
    rng = np.random.default_rng(seed)
    n_clusters = len(CLUSTER_GENRES)
    mal_ids = np.cumsum(rng.integers(1, 4, size=n_anime)).astype(np.int64)
    anime_cluster = rng.integers(0, n_clusters, size=n_anime)
    quality = rng.normal(0.0, 1.0, size=n_anime)
    popularity = rng.lognormal(0.0, 1.2, size=n_anime) * np.exp(0.4 * quality)
    types = rng.choice(TYPES, size=n_anime, p=TYPE_WEIGHTS)
    episodes = _episodes(rng, types)

    # Users: a main cluster plus a diffuse taste over the others.
    user_cluster = rng.integers(0, n_clusters, size=n_users)
    taste = rng.dirichlet(np.full(n_clusters, 0.3), size=n_users)
    taste[np.arange(n_users), user_cluster] += 1.0
    taste /= taste.sum(axis=1, keepdims=True)
    affinity = taste[:, anime_cluster]  # users x anime
    n_items = np.clip(rng.lognormal(np.log(mean_items) - 0.3, 0.75, size=n_users).astype(int), 5, n_anime)

    # Gumbel top-k draws each user's list without replacement, weighted by popularity x taste.
    logits = np.log(popularity)[None, :] + 4.0 * affinity + rng.gumbel(size=(n_users, n_anime))
    order = np.argsort(-logits, axis=1)
    rank_mask = np.arange(n_anime)[None, :] < n_items[:, None]
    users = np.repeat(np.arange(n_users), n_items)
    items = order[rank_mask]
    pair_affinity = affinity[users, items]

    rows = len(users)
    status = rng.choice([2, 1, 3, 4, 6], size=rows, p=[0.6, 0.08, 0.05, 0.05, 0.22])
    # Users drop and shelve what they like least.
    dislike = pair_affinity < np.quantile(pair_affinity, 0.15)
    status = np.where(dislike & (rng.random(rows) < 0.3), 4, status)
    eps = np.nan_to_num(episodes[items], nan=24.0).astype(np.int64)
    partial = (rng.random(rows) * eps).astype(np.int64)
    watched = np.select([status == 2, status == 6, status == 4], [eps, np.zeros(rows, np.int64), partial // 2], default=partial)
    raw = 5.2 + 1.1 * quality[items] + 9.0 * (pair_affinity - 1.0 / n_clusters) + rng.normal(0, 0.9, size=rows)
    rating = np.clip(np.rint(raw), 1, 10).astype(np.int8)
    rated = (status != 6) & (rng.random(rows) < 0.8)
    rating = np.where(rated, rating, 0).astype(np.int8)
    stats = pd.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "anime_id": mal_ids[items],
            "rating": rating,
            "watching_status": status.astype(np.int8),
            "watched_episodes": watched.astype(np.int32),
        }
    ).sort_values(["user_id", "anime_id"], ignore_index=True)

    all_anime = _anime_table(rng, stats, mal_ids, anime_cluster, quality, types, episodes)
    synopses = pd.DataFrame(
        {
            "MAL_ID": all_anime["MAL_ID"],
            "Name": all_anime["Name"],
            "Score": all_anime["Score"],
            "Genres": all_anime["Genres"],
            "sypnopsis": "A " + all_anime["Genres"].str.split(", ").str[0].str.lower() + " story: "
            + all_anime["Name"] + " follows " + pd.Series(np.array(WORDS)[rng.integers(0, len(WORDS), n_anime)]).str.lower()
            + " across " + all_anime["Episodes"].astype(str) + " episode(s).",
        }
    )
    logger.info("generated sample: %d users, %d anime, %d rows", n_users, n_anime, len(stats))
    return SampleData(all_anime, synopses, stats, anime_cluster, user_cluster)


def _anime_table(
    rng: np.random.Generator,
    stats: pd.DataFrame,
    mal_ids: np.ndarray,
    clusters: np.ndarray,
    quality: np.ndarray,
    types: np.ndarray,
    episodes: np.ndarray,
) -> pd.DataFrame:
    """The ``all_anime`` table, with statistics consistent with the generated lists."""
    n = len(mal_ids)
    names, japanese = _names(rng, n)
    position = np.searchsorted(mal_ids, stats["anime_id"].to_numpy())
    status_counts = np.zeros((n, 7), dtype=np.int64)
    np.add.at(status_counts, (position, stats["watching_status"].to_numpy()), 1)
    score_counts = np.zeros((n, 11), dtype=np.int64)
    np.add.at(score_counts, (position, stats["rating"].to_numpy()), 1)
    # MyAnimeList's site-wide numbers are far larger than our sample; scale them up.
    scale = 137
    rated = score_counts[:, 1:].sum(axis=1)
    mean_rating = (score_counts[:, 1:] * np.arange(1, 11)).sum(axis=1) / np.maximum(rated, 1)
    score = np.where(rated >= 3, np.round(mean_rating, 2), np.nan)
    members = status_counts.sum(axis=1) * scale
    popularity_rank = pd.Series(-members).rank(method="first").astype(int).to_numpy()
    ranked = pd.Series(-np.nan_to_num(score, nan=-1)).rank(method="first").astype(int).to_numpy()
    years = rng.integers(1980, 2021, size=n)
    seasons = rng.choice(["Winter", "Spring", "Summer", "Fall"], size=n)
    studios = rng.choice(["Sunrise", "Madhouse", "Bones", "Toei Animation", "Kyoto Animation", "Production I.G"], size=n)
    english = np.where(rng.random(n) < 0.6, pd.Series(names).str.upper().str.title(), "Unknown")

    def fmt(values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), "Unknown", pd.Series(values).map("{:g}".format))

    table = {
        "MAL_ID": mal_ids,
        "Name": names,
        "Score": np.where(np.isnan(score), "Unknown", pd.Series(score).map("{:.2f}".format)),
        "Genres": _anime_genres(rng, clusters),
        "English name": english,
        "Japanese name": japanese,
        "Type": types,
        "Episodes": fmt(episodes),
        "Aired": pd.Series(years).astype(str).radd("Apr 3, "),
        "Premiered": np.where(types == "TV", seasons + " " + years.astype(str), "Unknown"),
        "Producers": "Aniplex",
        "Licensors": np.where(rng.random(n) < 0.5, "Funimation", "Unknown"),
        "Studios": studios,
        "Source": rng.choice(SOURCES, size=n, p=SOURCE_WEIGHTS),
        "Duration": np.where(types == "Movie", "1 hr. 45 min.", "24 min. per ep."),
        "Rating": rng.choice(["PG-13 - Teens 13 or older", "R - 17+ (violence & profanity)", "G - All Ages"], size=n),
        "Ranked": np.where(np.isnan(score), "Unknown", ranked.astype(str)),
        "Popularity": popularity_rank,
        "Members": members,
        "Favorites": (score_counts[:, 10] * scale // 4),
        "Watching": status_counts[:, 1] * scale,
        "Completed": status_counts[:, 2] * scale,
        "On-Hold": status_counts[:, 3] * scale,
        "Dropped": status_counts[:, 4] * scale,
        "Plan to Watch": status_counts[:, 6] * scale,
    }
    for r in range(10, 0, -1):
        table[f"Score-{r}"] = (score_counts[:, r] * scale).astype(str)
    frame = pd.DataFrame(table)
    assert tuple(frame.columns) == ANIME_COLUMNS
    return frame
