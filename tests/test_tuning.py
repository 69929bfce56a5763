"""Tests of anime_recs.pipeline.tuning: grids, trials as MLflow child runs on validation splits, writing defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anime_recs.evaluation.datasets import BenchData
from anime_recs.core.errors import UserInputError
from anime_recs.evaluation import Columns
from anime_recs.pipeline.tuning import parse_grid, tune, write_defaults

REPO = Path(__file__).resolve().parents[1]


def _clustered(_: Path) -> pd.DataFrame:
    """60 users x 40 items in two taste clusters: enough signal for EASE to separate settings."""
    rng = np.random.default_rng(3)
    rows = []
    for user in range(60):
        own = np.arange(20) + 20 * (user % 2)
        for item in rng.choice(own, 12, replace=False):
            rows.append((user, int(item), float(rng.integers(6, 11))))
        for item in rng.choice(np.setdiff1d(np.arange(40), own), 3, replace=False):
            rows.append((user, int(item), float(rng.integers(1, 5))))
    return pd.DataFrame(rows, columns=["user_id", "anime_id", "rating"])


TINY = {"tiny": BenchData("tiny clusters", Columns(), 1.0, 8.0, (1.0, 10.0), _clustered)}


def test_parse_grid_is_the_cartesian_product() -> None:
    assert parse_grid(["a=1,2", "b=x,0.5"]) == [{"a": 1, "b": "x"}, {"a": 1, "b": 0.5}, {"a": 2, "b": "x"}, {"a": 2, "b": 0.5}]
    with pytest.raises(UserInputError, match="KEY=V1,V2"):
        parse_grid(["l2_per_count"])


def test_every_trial_is_a_child_run_scored_on_validation(tmp_path: Path, tracking_uri: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    winner, trials = tune("ease", parse_grid(["l2_per_count=0.5,500", "embedding_size=4"]), ["tiny"], tmp_path,
                          experiment="tuning-test", registry=TINY)
    assert len(trials) == 2 and winner in trials
    assert winner.scores["tiny"] == max(t.scores["tiny"] for t in trials) and winner.relative == pytest.approx(1.0)
    runs = MlflowClient().search_runs([mlflow.get_experiment_by_name("tuning-test").experiment_id])
    parents = [r for r in runs if r.info.run_name == "tune-ease"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.params["l2_per_count"] for c in children} == {"0.5", "500"}
    assert all("tiny.val_nDCG_at_10" in c.data.metrics for c in children)


def test_unknown_option_fails_before_any_trial(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="unknown option.*l2_per_cnt"):
        tune("ease", [{"l2_per_cnt": 3}], ["tiny"], tmp_path, registry=TINY)
    with pytest.raises(UserInputError, match="cannot tune family 'hybrid'"):
        tune("hybrid", [{}], ["tiny"], tmp_path, registry=TINY)


def test_write_defaults_updates_the_family_and_the_hybrid_half(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    written = write_defaults("ease", {"l2_per_count": 12.5, "liked_weight": 3}, "anime-recs tune --family ease", tmp_path / "config")
    assert [p.name for p in written] == ["ease.yaml", "hybrid.yaml"]
    import yaml

    ease = yaml.safe_load((tmp_path / "config/model/ease.yaml").read_text())
    hybrid = yaml.safe_load((tmp_path / "config/model/hybrid.yaml").read_text())
    assert ease["l2_per_count"] == 12.5 and ease["liked_weight"] == 3
    assert hybrid["ranking"]["l2_per_count"] == 12.5 and hybrid["rating"] == yaml.safe_load(
        (REPO / "config/model/hybrid.yaml").read_text())["rating"]
    assert "anime-recs tune --family ease" in (tmp_path / "config/model/hybrid.yaml").read_text()


def test_each_family_declares_its_own_objective_and_search_space_around_its_defaults():
    # The search space lives with the family (RecommenderModel.tuning_grid), not in the tuning command.
    from anime_recs.evaluation.datasets import pipeline_model_config
    from anime_recs.models import FAMILIES, build_model
    from anime_recs.pipeline.tuning import OBJECTIVES, default_grid, parse_grid

    assert set(OBJECTIVES) == {"ease", "neighbourhood", "original"}  # the hybrid is tuned through its halves
    for family in OBJECTIVES:
        grid = parse_grid(default_grid(family))
        assert len(grid) >= 2
        defaults = build_model(pipeline_model_config(family)).params
        for key, values in FAMILIES[family].tuning_grid.items():
            assert defaults[key] in values, f"{family}.{key}: the default {defaults[key]} is not in its search space"
        for setting in grid:
            assert {k: build_model(pipeline_model_config(family, setting)).params[k] for k in setting} == setting
