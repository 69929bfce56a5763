"""Bodies of the five recommender steps: similar_anime, similar_users, user_prefs, user_recs, model_recs.

Each loads the recommender (:func:`~anime_recs.pipeline.steps.recommend.load_recommender`),
answers one query, prints a readable table and publishes CSVs (and word clouds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anime_recs.core.io import write_csv
from anime_recs.recommend import UserPreferences
from anime_recs.pipeline.tracking import StepContext
from anime_recs.pipeline.steps.recommend import RecommenderInputs, UserChoice, choose_user, cloud_files, load_recommender, publish_table

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ["MAL_ID", "Name", "Similarity", "Match", "Predicted rating", "Explanation", "Genres", "Type", "Episodes", "Score"]


@dataclass(frozen=True)
class CloudOptions:
    """Word cloud size and file names."""

    width: int
    height: int
    genre_fn: str
    source_fn: str
    cloud_type: str


def _publish_clouds(ctx: StepContext, prefs: UserPreferences, clouds: CloudOptions, artifact: str, metadata: dict) -> str:
    """Draw the genre and source clouds of a user's favourites and publish them as one artifact."""
    files = cloud_files(ctx, prefs.genres, prefs.sources, prefs.user_id, clouds.width, clouds.height, clouds.genre_fn, clouds.source_fn)
    return ctx.log_artifact(artifact, clouds.cloud_type, files, f"word clouds of user {prefs.user_id}'s favourites", metadata).ref


def run_similar_anime(ctx: StepContext, inputs: RecommenderInputs, anime_query: str, random_anime: bool, n: int,
                      genres: list[str] | None, types: list[str] | None, output: str, output_type: str, seed: int,
                      min_ratings: int | None = None) -> str:
    """Step 4: the anime most similar to a named (or random) anime."""
    rec = load_recommender(ctx, inputs)
    query = rec.random_anime(np.random.default_rng(seed)) if random_anime else anime_query
    frame = rec.similar_anime(query, n, genres=genres or None, types=types or None, min_ratings=min_ratings)
    minimum = rec.enough_evidence(min_ratings)[2]
    title = f"anime similar to {frame.attrs['query_name']} (MAL_ID {frame.attrs['query_id']}; rated by >= {minimum} users)"
    metadata = {"query": str(query), "query_id": int(frame.attrs["query_id"]), "query_name": frame.attrs["query_name"],
                "genres": genres, "types": types, "min_ratings": minimum}
    return publish_table(ctx, frame, output, output_type, title, title, metadata, TABLE_COLUMNS)


def run_similar_users(ctx: StepContext, inputs: RecommenderInputs, choice: UserChoice, n: int, num_faves: int, tv_only: bool,
                      output: str, output_type: str, id_output: str, id_type: str, seed: int,
                      min_ratings: int | None = None) -> dict[str, str]:
    """Step 5: the users most similar to one user, with their favourites; publishes the id used."""
    rec = load_recommender(ctx, inputs)
    user_id, source = choose_user(ctx, rec, choice, seed)
    print(f"query user {user_id} (from {source})", flush=True)
    frame = rec.similar_users(user_id, n, num_faves=num_faves, tv_only=tv_only, min_ratings=min_ratings)
    table = frame.drop(columns=[c for c in ("favorite_ids",) if c in frame.columns])
    ref = publish_table(ctx, table, output, output_type, f"users similar to user {user_id}", f"users most similar to user {user_id}",
                        {"user_id": user_id, "user_source": source})
    id_path = write_csv(pd.DataFrame({"user_id": [user_id]}), ctx.workdir / id_output)
    id_ref = ctx.log_artifact(id_output, id_type, {id_output: id_path}, "User id used by similar_users", {"user_id": user_id}).ref
    return {"similar_users": ref, "id": id_ref}


def run_user_prefs(ctx: StepContext, inputs: RecommenderInputs, choice: UserChoice, favorite_percentile: float,
                   clouds: CloudOptions, output: str, output_type: str, clouds_artifact: str, seed: int) -> dict[str, str]:
    """Step 6: a user's favourite genres and sources, as a CSV and two word clouds."""
    rec = load_recommender(ctx, inputs)
    user_id, source = choose_user(ctx, rec, choice, seed)
    prefs = rec.user_preferences(user_id, favorite_percentile)
    print(f"user {user_id} (from {source}): {len(prefs.favorites)} favourites (rating >= {prefs.threshold:g})", flush=True)
    print(pd.DataFrame({"genre": prefs.genres.index[:10], "favourites": prefs.genres.to_numpy()[:10]}).to_string(index=False))
    metadata = {"user_id": user_id, "user_source": source, "favorite_percentile": favorite_percentile,
                "top_genres": prefs.genres.head(10).to_dict(), "top_sources": prefs.sources.head(10).to_dict()}
    ref = publish_table(ctx, prefs.to_frame(), output, output_type, f"favourites of user {user_id}",
                        f"favourite anime of user {user_id}", metadata)
    return {"prefs": ref, "clouds": _publish_clouds(ctx, prefs, clouds, clouds_artifact, metadata)}


def run_user_recs(ctx: StepContext, inputs: RecommenderInputs, choice: UserChoice, n: int, n_similar: int, num_faves: int,
                  genres: list[str] | None, favorite_percentile: float, clouds: CloudOptions, output: str, output_type: str,
                  clouds_artifact: str, seed: int) -> dict[str, str]:
    """Step 7: unseen anime favoured by similar users, plus the user's own preference clouds."""
    rec = load_recommender(ctx, inputs)
    user_id, source = choose_user(ctx, rec, choice, seed)
    print(f"query user {user_id} (from {source})", flush=True)
    frame = rec.recommend_from_similar_users(user_id, n, n_similar=n_similar, num_faves=num_faves, genres=genres or None,
                                             favorite_percentile=favorite_percentile)
    metadata = {"user_id": user_id, "user_source": source, "genres": genres, "n_similar": n_similar}
    ref = publish_table(ctx, frame, output, output_type, f"recommendations for user {user_id} from similar users",
                        f"recommendations for user {user_id} from {n_similar} similar users", metadata, TABLE_COLUMNS)
    prefs = rec.user_preferences(user_id, favorite_percentile)
    return {"recs": ref, "clouds": _publish_clouds(ctx, prefs, clouds, clouds_artifact, metadata)}


def run_model_recs(ctx: StepContext, inputs: RecommenderInputs, choice: UserChoice, n: int, types: list[str] | None,
                   genres: list[str] | None, min_score: float | None, max_score: float | None, output: str, output_type: str,
                   seed: int) -> str:
    """Step 8: unseen anime ranked by the model's rank score for a user (shown as Match, 0-100), with predicted ratings."""
    rec = load_recommender(ctx, inputs)
    user_id, source = choose_user(ctx, rec, choice, seed)
    print(f"query user {user_id} (from {source})", flush=True)
    frame = rec.recommend_by_model(user_id, n, types=types or None, genres=genres or None, min_score=min_score, max_score=max_score)
    metadata = {"user_id": user_id, "user_source": source, "types": types, "genres": genres, "min_score": min_score, "max_score": max_score}
    return publish_table(ctx, frame, output, output_type, f"model recommendations for user {user_id} ({rec.model.family} model)",
                         f"top {n} unseen anime for user {user_id}, ranked by the {rec.model.family} model (Match: share of candidates "
                         f"ranked lower), with predicted ratings", metadata, TABLE_COLUMNS)
