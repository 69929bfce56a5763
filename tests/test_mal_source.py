"""The ``mal-api:FOLDER`` download source, and the whole pipeline on refreshed data from the fake API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.data.download import MAL_API, source_kind
from anime_recs.core.errors import UserInputError
from anime_recs.data.mal import source as mal_source
from anime_recs.pipeline.run import step_params
from tests.conftest import REPO, child_env
from tests.mal_fake import api_root, files_containing, sample_world, serve
from tests.test_pipeline import assert_one_line_error, mlflow_run

SECRET = "mal-5ecret-pipe-4b1c"


def refresh(out: Path, world, names_file: Path, current: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``anime-recs mal refresh`` in a subprocess against the running fake API."""
    env = child_env(MAL_CLIENT_ID=SECRET, MAL_API_BASE_URL=api_root(world.fake))
    return subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "mal", "refresh", "--out", str(out), "--anime-ids-from", str(current),
                           "--users", str(names_file), "--since-year", "2025", "--until-year", "2025", "--until-season", "spring",
                           "--rate", "100", "--no-progress"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def make_refresh(tmp_path: Path, n_users: int, n_anime: int, mean_items: int, out: Path, **world_options):
    world = sample_world(SECRET, n_users=n_users, n_anime=n_anime, mean_items=mean_items, **world_options)
    (tmp_path / "users.txt").write_text("\n".join(world.names) + "\n")
    current = tmp_path / "current_anime.csv"
    world.sample.all_anime.to_csv(current, index=False)
    with serve(world.fake):
        result = refresh(out, world, tmp_path / "users.txt", current)
    assert result.returncode == 0, result.stderr[-3000:]
    return world, result


def test_source_syntax_and_pipeline_paths(tmp_path: Path) -> None:
    assert source_kind("mal-api:mal_data") == MAL_API and source_kind("MAL-API:/x") == MAL_API
    assert mal_source.absolute("mal-api:mal_data", tmp_path) == f"mal-api:{tmp_path / 'mal_data'}"
    with pytest.raises(UserInputError, match="names no folder"):
        mal_source.folder_of("mal-api:")
    with pytest.raises(UserInputError, match="holds no finished MyAnimeList refresh"):
        mal_source.refreshed_file(f"mal-api:{tmp_path}", "all_anime")
    d = {"stats_url": "mal-api:mal_data", "all_anime_url": "mal-api:/abs/mal", "synopses_url": "sample", "local_fname": "", "local_dir": "x"}
    cfg = {"data": {**{k: "" for k in ("stats_artifact", "stats_artifact_type", "stats_artifact_description", "all_anime_artifact",
                                       "all_anime_type", "all_anime_description", "synopses_artifact", "synopses_artifact_type",
                                       "synopses_artifact_description", "from_local", "save_raw_locally", "sample_users",
                                       "sample_anime", "sample_mean_items", "download_timeout")}, **d},
           "main": {"random_seed": 1}}
    params = step_params("download", cfg, tmp_path, tmp_path)
    assert params["stats_url"] == f"mal-api:{tmp_path / 'mal_data'}" and params["all_anime_url"] == "mal-api:/abs/mal"


@pytest.mark.slow  # real step and CLI processes, searched byte by byte for names and the client id
def test_download_step_publishes_a_refresh_with_counts_and_no_names(tmp_path: Path) -> None:
    out = tmp_path / "mal"
    world, result = make_refresh(tmp_path, n_users=6, n_anime=15, mean_items=6, out=out)
    env = child_env(ANIME_RECS_ARTIFACTS=str(tmp_path / "artifacts"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                    ANIME_RECS_WANDB_MODE="disabled")
    env.pop("MLFLOW_RUN_ID", None)
    source = f"mal-api:{out}"
    step = subprocess.run([sys.executable, "download.py", "--stats_url", source, "--all_anime_url", source, "--synopses_url", source],
                          cwd=REPO / "download", env=env, capture_output=True, text=True, timeout=300)
    assert step.returncode == 0, step.stderr[-3000:]
    store = ArtifactStore(tmp_path / "artifacts")
    anime = store.get("all_anime.csv:v0")
    assert anime.metadata["source"] == source and anime.metadata["mal_refresh"]["users"] == 6
    assert set(world.new_ids) <= set(pd.read_csv(anime.file())["MAL_ID"])
    stats = pd.read_parquet(store.get("user_stats.parquet:v0").file())
    assert stats["user_id"].nunique() == 6
    published = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] + [tmp_path / "mlflow.db"]
    assert not [p for p in published for name in world.names if name.encode() in p.read_bytes()]
    assert files_containing(tmp_path / "artifacts", SECRET) == [] and SECRET.encode() not in (tmp_path / "mlflow.db").read_bytes()

    # A folder without a finished refresh, or a refresh without users for the stats, is a one-line error.
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([sys.executable, "download.py", "--all_anime_url", f"mal-api:{empty}"], cwd=REPO / "download", env=env,
                         capture_output=True, text=True, timeout=300)
    assert_one_line_error(bad, "holds no finished MyAnimeList refresh")
    no_users = tmp_path / "no_users"
    with serve(world.fake):
        env_refresh = child_env(MAL_CLIENT_ID=SECRET, MAL_API_BASE_URL=api_root(world.fake))
        made = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "mal", "refresh", "--out", str(no_users), "--anime-ids", "3,4",
                               "--no-progress"], env=env_refresh, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    bad = subprocess.run([sys.executable, "download.py", "--stats_url", f"mal-api:{no_users}"], cwd=REPO / "download", env=env,
                         capture_output=True, text=True, timeout=300)
    assert_one_line_error(bad, "fetched no user lists")
    assert len(store.versions("user_stats.parquet")) == 1  # nothing published by the bad runs


@pytest.mark.slow
def test_pipeline_runs_on_refreshed_data_and_recommends_a_new_anime(tmp_path: Path) -> None:
    # Regression: with hybrid the default family, the network options (model.epochs, ...) need model=original.
    work = tmp_path / "work"
    work.mkdir()
    world, _ = make_refresh(tmp_path, n_users=80, n_anime=40, mean_items=14, out=work / "mal_data")
    source = f"mal-api:{work / 'mal_data'}"
    rated = world.sample.stats.query("rating > 0").groupby("user_id").size()
    non_fan = int(rated[rated.index % 2 == 1].idxmax())  # odd users have not seen the new anime; this one survives preprocess
    overrides = (f"main.execute_steps='download,preprocess,neural_network,model_recs' "
                 f"data.stats_url={source} data.all_anime_url={source} data.synopses_url={source} data.num_reviews=3 "
                 f"model_recs.model_user_query={non_fan} model_recs.model_ID_flow=false "
                 f"model_recs.model_num_recs=100 main.wandb_mode=disabled")
    result = mlflow_run(str(REPO), work, "-P", f"hydra_options={overrides}", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    store = ArtifactStore(work / "artifacts")
    assert store.get("all_anime.csv:latest").metadata["source"].startswith(f"mal-api:{work / 'mal_data'}")
    assert set(world.new_ids) <= set(pd.read_parquet(store.get("preprocessed_stats.parquet:latest").file())["anime_id"])
    recs = pd.read_csv(store.get("model_recs.csv:latest").file())
    id_column = "MAL_ID" if "MAL_ID" in recs.columns else "anime_id"
    assert store.get("model_recs.csv:latest").metadata["user_id"] == non_fan
    assert set(world.new_ids) <= set(recs[id_column])  # anime that did not exist in the old data are recommended
    assert not set(world.new_ids) & set(world.sample.all_anime["MAL_ID"])
    assert not files_containing(work, SECRET)
    assert SECRET not in result.stdout + result.stderr
