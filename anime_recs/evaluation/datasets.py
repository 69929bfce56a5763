"""The real data sets the benchmark and the tuning command evaluate on, with their protocol settings.

Like ``implicit.datasets``: each entry knows how to load its file (from the shared
data folder, ``../shared/data`` beside the repository by default) and which rating
counts as relevant. The files themselves are never part of the repository.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anime_recs.core.errors import UserInputError
from anime_recs.evaluation import Columns

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """``../shared/data`` beside the repository."""
    return REPO.parent / "shared" / "data"


def pipeline_model_config(family: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``model`` group as the pipeline composes it (``family`` = ``model=<family>``; None = the default).

    Args:
        family: A model family, as ``model=<family>`` on the command line.
        overrides: Option -> value (dotted keys for nested groups).
    """
    from anime_recs.core.config import load_group_config

    text = " ".join(f"{k}={json.dumps(v)}" for k, v in (overrides or {}).items())
    if family:
        text = f"family={family} {text}"
    return load_group_config(str(REPO / "config" / "config.yaml"), ("model",), text)


@dataclass(frozen=True)
class BenchData:
    """One data set of the benchmark and the protocol settings that go with it."""

    title: str
    cols: Columns
    min_rating: float
    relevant_threshold: float
    rating_bounds: tuple[float, float]
    load: Callable[[Path], pd.DataFrame]


def load_mal(data_dir: Path) -> pd.DataFrame:
    """MyAnimeList ``rating_complete`` head (100k rows) without its possibly truncated last user."""
    path = data_dir / "mal2020" / "rating_complete_head100k.csv"
    if not path.is_file():
        raise UserInputError(f"{path} not found; pass --data-dir pointing at the shared data folder")
    frame = pd.read_csv(path, dtype={"user_id": np.int64, "anime_id": np.int64, "rating": np.float64})
    # A head sample of a file sorted by user ends inside a user (664, see data/SOURCES.md).
    last = int(frame["user_id"].iloc[-1])
    logger.info("MAL: dropping the last user %d (%d rows), possibly truncated", last, int((frame["user_id"] == last).sum()))
    return frame.loc[frame["user_id"] != last].reset_index(drop=True)


def load_movielens(data_dir: Path) -> pd.DataFrame:
    """``ratings.csv`` of MovieLens ``ml-latest-small.zip``, read from inside the zip."""
    path = data_dir / "movielens" / "ml-latest-small.zip"
    if not path.is_file():
        raise UserInputError(f"{path} not found; pass --data-dir pointing at the shared data folder")
    with zipfile.ZipFile(path) as archive, archive.open("ml-latest-small/ratings.csv") as handle:
        return pd.read_csv(handle, usecols=["userId", "movieId", "rating"])


DATASETS: dict[str, BenchData] = {
    "mal": BenchData(
        title="MyAnimeList rating_complete head 100k (ratings 1-10, relevant >= 8)",
        cols=Columns("user_id", "anime_id", "rating"),
        min_rating=1.0,
        relevant_threshold=8.0,
        rating_bounds=(1.0, 10.0),
        load=load_mal,
    ),
    "movielens": BenchData(
        title="MovieLens ml-latest-small (ratings 0.5-5, relevant >= 4)",
        cols=Columns("userId", "movieId", "rating"),
        min_rating=0.5,
        relevant_threshold=4.0,
        rating_bounds=(0.5, 5.0),
        load=load_movielens,
    ),
}
