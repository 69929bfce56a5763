"""Hydra: the experiment preset, config groups, and sweeps (one MLflow parent run per job)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from anime_recs.core.options import validate_config
from anime_recs.core.errors import UserInputError
from tests.conftest import REPO, child_env


def composed(*overrides: str) -> dict:
    """The config main.py would get for these overrides, resolved."""
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "config"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def test_experiment_original_restores_the_original_settings_in_one_override() -> None:
    cfg = composed("experiment=original")
    assert cfg["model"]["family"] == "original"
    assert (cfg["model"]["batch_size"], cfg["model"]["start_lr"], cfg["model"]["max_lr"], cfg["model"]["l2_reg_factor"]) == (
        10000, 1e-5, 5e-5, 1e-6)
    assert cfg["data"]["num_reviews"] == 400
    assert cfg["data"]["stats_url"].startswith("https://github.com/Dyrutter/anime_recommendations/")
    default = composed()
    assert default["model"]["family"] == "hybrid" and default["data"]["stats_url"] == "sample"
    assert default["main"]["artifact_backend"] == "local"
    validate_config(cfg)


def test_wrong_types_fail_before_any_step_naming_the_key() -> None:
    with pytest.raises(UserInputError, match="main.verbose must be true or false, got 'loud'"):
        validate_config(composed("main.verbose=loud"))


@pytest.mark.slow
def test_multirun_sweep_gives_one_parent_run_per_job(tmp_path: Path) -> None:
    # Regression: `-m model.ranking.l2_per_count=40,80` used to become one job with the string '40,80'.
    env = child_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", ANIME_RECS_WANDB_MODE="disabled")
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(key, None)
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "-m", "model.ranking.l2_per_count=40,80",
                             "main.execute_steps=download", "data.sample_users=60", "data.sample_anime=50",
                             "data.sample_mean_items=10"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    con = sqlite3.connect(tmp_path / "mlflow.db")
    try:
        parents = con.execute("select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid "
                              "where t.key = 'mlflow.runName' and t.value = 'pipeline'").fetchall()
        overrides = sorted(v for (v,) in con.execute("select value from tags where key = 'anime_recs.overrides'"))
    finally:
        con.close()
    assert len(parents) == 2
    assert overrides == ["model.ranking.l2_per_count=40 main.execute_steps=download data.sample_users=60 data.sample_anime=50 "
                         "data.sample_mean_items=10", "model.ranking.l2_per_count=80 main.execute_steps=download data.sample_users=60 "
                         "data.sample_anime=50 data.sample_mean_items=10"]
