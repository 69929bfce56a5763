"""What the five recommender steps share: loading the recommender, choosing the user, writing results.

Inputs of every recommender step: the embeddings bundle (from neural_network), the
preprocessed stats, the all-anime table and the synopses. They are checked against
each other: a model trained on other data stops the step with one line.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anime_recs.core.errors import ArtifactError, UserInputError
from anime_recs.core.io import print_table, write_csv
from anime_recs.recommend import AnimeRecommender
from anime_recs.recommend.loader import open_model_version
from anime_recs.pipeline.tracking import StepContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecommenderInputs:
    """Artifact references of the recommender's inputs."""

    embeddings: str
    main_df: str
    anime_df: str
    synopses_df: str


@dataclass(frozen=True)
class UserChoice:
    """Where the query user comes from: the flow's id artifact, the config, or random."""

    user_query: int | None
    random_user: bool
    from_flow: bool
    flow_artifact: str
    flow_type: str
    max_ratings: int | None


def inputs_from_args(args: argparse.Namespace) -> RecommenderInputs:
    """Collect :class:`RecommenderInputs` from parsed options."""
    return RecommenderInputs(args.embeddings, args.main_df, args.anime_df, args.synopses_df)


def user_choice_from_args(args: argparse.Namespace) -> UserChoice:
    """Collect :class:`UserChoice` from parsed options."""
    return UserChoice(args.user_query, args.random_user, args.from_flow, args.flow_artifact, "user_id", args.max_ratings)


def load_recommender(ctx: StepContext, inputs: RecommenderInputs) -> AnimeRecommender:
    """Open the model version and its data (checked to belong together) and build the recommender."""
    return open_model_version(ctx.use_artifact, inputs.embeddings, inputs.main_df, inputs.anime_df,
                              inputs.synopses_df).recommender()


def choose_user(ctx: StepContext, rec: AnimeRecommender, choice: UserChoice, seed: int) -> tuple[int, str]:
    """The query user and where it came from: flow artifact, else config id, else random."""
    if choice.from_flow:
        try:
            artifact = ctx.use_artifact(choice.flow_artifact, choice.flow_type)
        except ArtifactError as exc:
            if "no artifact named" not in str(exc):
                raise
            logger.info("no %s yet; falling back to the configured user", choice.flow_artifact)
        else:
            user_id = int(pd.read_csv(artifact.file())["user_id"].iloc[0])
            return user_id, f"the similar_users step ({artifact.ref})"
    if choice.user_query is not None and not choice.random_user:
        return int(choice.user_query), "the config"
    user_id = rec.random_user(np.random.default_rng(seed), max_ratings=choice.max_ratings)
    limit = f" with at most {choice.max_ratings} ratings" if choice.max_ratings else ""
    return user_id, f"random choice{limit} (seed {seed})"


def publish_table(ctx: StepContext, frame: pd.DataFrame, name: str, type: str, description: str, title: str,
                  metadata: dict | None = None, columns: list[str] | None = None) -> str:
    """Print a readable table, show it in the MLflow (and W&B) UI, write the CSV atomically and publish it; return the ref."""
    shown = frame[[c for c in (columns or list(frame.columns)) if c in frame.columns]]
    print_table(shown, title)
    ctx.log_table(shown, name)
    if frame.attrs.get("note"):
        print(f"note: {frame.attrs['note']}", flush=True)
    path = write_csv(frame, ctx.workdir / name)
    return ctx.log_artifact(name, type, {name: path}, description, metadata or {}).ref


def cloud_files(ctx: StepContext, genres: pd.Series, sources: pd.Series, user_id: int, width: int, height: int,
                genre_fn: str, source_fn: str) -> dict[str, Path]:
    """Draw the genre and source word clouds of a user's favourites."""
    from anime_recs.pipeline.plots import genre_cloud

    files = {}
    for fn, counts, what in ((genre_fn, genres, "genres"), (source_fn, sources, "source material")):
        if counts.empty:
            raise UserInputError(f"user {user_id} has no favourites with known {what}; try another user or a lower favorite_percentile")
        files[fn] = Path(genre_cloud(counts, ctx.workdir / fn, width, height, title=f"User {user_id}: favourite {what}"))
    return files
