"""`data=files data.dir=DIR`: a folder of the upstream Kaggle files runs the pipeline; a wrong one fails in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.data.sample import make_sample
from anime_recs.data.upstream import resolve_dir_sources
from anime_recs.store.artifacts import ArtifactStore
from tests.conftest import REPO, child_env

DIR_SOURCES = {"stats_url": "dir", "all_anime_url": "dir", "synopses_url": "dir"}


def _upstream_folder(folder: Path) -> Path:
    """The embedded sample written under the upstream file names."""
    sample = make_sample(150, 100, 25, 7)
    folder.mkdir(parents=True, exist_ok=True)
    sample.stats.to_csv(folder / "animelist.csv", index=False)
    sample.all_anime.to_csv(folder / "anime.csv", index=False)
    sample.synopses.to_csv(folder / "anime_with_synopsis.csv", index=False)
    return folder


def _main(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = child_env(ANIME_RECS_WANDB_MODE="disabled")
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(key, None)
    return subprocess.run([sys.executable, str(REPO / "main.py"), *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_each_kind_is_found_under_its_upstream_name_parquet_first(tmp_path: Path) -> None:
    folder = _upstream_folder(tmp_path / "kaggle")
    pd.read_csv(folder / "anime.csv").to_parquet(folder / "anime.parquet")
    resolved = resolve_dir_sources({**DIR_SOURCES, "dir": "kaggle", "num_reviews": 5}, tmp_path)
    assert resolved["stats_url"] == str(folder / "animelist.csv")
    assert resolved["all_anime_url"] == str(folder / "anime.parquet")  # the twin is smaller and faster
    assert resolved["synopses_url"] == str(folder / "anime_with_synopsis.csv")
    assert resolved["num_reviews"] == 5

    (folder / "animelist.csv").rename(folder / "rating_complete.csv")
    assert resolve_dir_sources({**DIR_SOURCES, "dir": str(folder)}, tmp_path)["stats_url"] == str(folder / "rating_complete.csv")
    # One source from elsewhere: only the others come from the folder.
    mixed = resolve_dir_sources({**DIR_SOURCES, "synopses_url": "sample", "dir": str(folder)}, tmp_path)
    assert mixed["synopses_url"] == "sample"


@pytest.mark.parametrize(("directory", "expected"), [
    ("???", "data=files needs data.dir=DIR"),
    ("", "data=files needs data.dir=DIR"),
    ("missing", "data.dir=missing: no such folder"),
    ("empty", "data.dir=empty has no animelist.csv or rating_complete.csv (or a .parquet twin) for data.stats_url"),
])
def test_a_wrong_folder_is_named_with_the_option_the_user_typed(tmp_path: Path, directory: str, expected: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        resolve_dir_sources({**DIR_SOURCES, "dir": directory}, tmp_path)


def test_sources_not_set_to_dir_are_left_alone(tmp_path: Path) -> None:
    data = {"stats_url": "sample", "all_anime_url": "https://example.org/a.csv", "synopses_url": "x.csv", "dir": ""}
    assert resolve_dir_sources(data, tmp_path) == data


@pytest.mark.slow  # two pipelines of download + preprocess, ~15 s each
def test_the_pipeline_reads_a_folder_of_upstream_files_and_names_a_broken_one(tmp_path: Path) -> None:
    folder = _upstream_folder(tmp_path / "kaggle")
    steps = "main.execute_steps=download,preprocess"
    ran = _main(tmp_path, "data=files", "data.dir=kaggle", steps, "data.num_reviews=5")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    store = ArtifactStore(tmp_path / "runs" / "artifacts")
    assert store.get("user_stats.parquet:latest").metadata["source"] == str(folder / "animelist.csv")
    assert store.get("all_anime.csv:latest").metadata["source"] == str(folder / "anime.csv")
    assert len(pd.read_parquet(store.get("preprocessed_stats.parquet:latest").file())) > 0

    with open(folder / "animelist.csv", "a", encoding="utf-8") as handle:
        handle.write("1,2,3,4,5,6,7\n")  # a line with too many fields
    broken = _main(tmp_path, "data=files", "data.dir=kaggle", steps)
    assert broken.returncode != 0
    assert "Traceback" not in broken.stdout + broken.stderr
    errors = broken.stderr.strip().splitlines()  # one line: the step's, not repeated by the pipeline or MLflow
    assert len(errors) == 1 and errors[0].startswith("error: download: user stats file "), broken.stderr
    assert str(folder / "animelist.csv") in errors[0] and "got 7" in errors[0], broken.stderr
    assert broken.returncode == 2
    assert store.get("user_stats.parquet:latest").version == 0  # nothing published


@pytest.mark.slow  # download and preprocess of the real MyAnimeList head, ~15 s (the whole pipeline takes ~5 min)
def test_the_pipeline_reads_real_files_under_their_upstream_names(tmp_path: Path, mal_data: Path) -> None:
    folder = tmp_path / "kaggle"
    folder.mkdir()
    shutil.copyfile(mal_data / "animelist_head100k.csv", folder / "animelist.csv")
    shutil.copyfile(mal_data / "anime_2020.parquet", folder / "anime.parquet")
    shutil.copyfile(mal_data / "anime_with_synopsis_head269.csv", folder / "anime_with_synopsis.csv")
    shutil.copyfile(mal_data / "watching_status.csv", folder / "watching_status.csv")
    ran = _main(tmp_path, "data=files", f"data.dir={folder}", "data.num_reviews=20", "main.execute_steps=download,preprocess")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    store = ArtifactStore(tmp_path / "runs" / "artifacts")
    assert store.get("user_stats.parquet:latest").metadata["rows"] == 100_004
    assert store.get("all_anime.csv:latest").metadata["source"] == str(folder / "anime.parquet")
    assert len(pd.read_parquet(store.get("preprocessed_stats.parquet:latest").file())) == 52_842
