"""The model registry keeps one registered model per data set and compares champions like with like.

Units for the lineage and naming (:mod:`anime_recs.pipeline.registry`); the acceptance test runs two
real pipelines (``python main.py``) on different data into one store.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from anime_recs.data.download import dataset_label
from anime_recs.pipeline.registry import NAME, data_source, dataset_of, registered_name
from anime_recs.store.artifacts import ArtifactStore
from tests.conftest import REPO, child_env
from tests.serve_world import publish_world

STEPS = "main.execute_steps=download,preprocess,neural_network,evaluate"
SMALL = ["data.sample_users=200", "data.sample_anime=120", "data.sample_mean_items=30", "data.num_reviews=5"]


@pytest.mark.parametrize(("source", "label"), [
    ("sample", "sample"), ("local:/data/animelist.csv", "animelist"), ("/x/Anime List 2020.csv", "anime_list_2020"),
    ("https://example.org/dl/user_stats.parquet?token=1", "user_stats"), ("file:///tmp/r.csv", "r"),
])
def test_each_source_names_its_data_set(source: str, label: str) -> None:
    assert dataset_label(source) == label
    assert registered_name(label) == (NAME if label == "sample" else f"{NAME}-{label}")


def test_the_data_set_is_found_through_the_ratings_lineage(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    publish_world(root, source="local:/data/animelist.csv")
    store = ArtifactStore(root)
    assert data_source(store, "preprocessed_stats.parquet:v0") == "local:/data/animelist.csv"
    assert dataset_of(store, "preprocessed_stats.parquet:v0") == (f"{NAME}-animelist", "local:/data/animelist.csv")
    orphan = store.log("preprocessed_stats.parquet", "preprocessed_data", {"x.parquet": store.get("user_stats.parquet:v0").file()})
    assert dataset_of(store, orphan.ref)[0] == f"{NAME}-unknown"  # published without lineage: never the sample's champion


def _pipeline(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = child_env(ANIME_RECS_WANDB_MODE="disabled")
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        env.pop(key, None)
    result = subprocess.run([sys.executable, str(REPO / "main.py"), STEPS, *SMALL, *overrides], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow  # two real pipelines (download, preprocess, neural_network, evaluate), ~1 min each
def test_a_pipeline_on_other_data_never_replaces_the_samples_champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _pipeline(tmp_path)
    assert "promotion gate (anime_recs): challenger version 1" in first.stdout and "promoted to champion" in first.stdout
    # Other data: half of the sample's users, as a local CSV the download step reads.
    stats = pd.read_parquet(ArtifactStore(tmp_path / "runs" / "artifacts").get("user_stats.parquet:latest").file())
    other = tmp_path / "other_ratings.csv"
    stats[stats["user_id"] % 2 == 0].to_csv(other, index=False)
    second = _pipeline(tmp_path, f"data.stats_url={other}")
    assert f"registered MLflow model {NAME}-other_ratings version 1" in second.stdout
    assert "each data set has its own registered model" in second.stdout
    assert f"promotion gate ({NAME}-other_ratings)" in second.stdout

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    sample = client.get_registered_model(NAME)
    assert {k: int(v) for k, v in sample.aliases.items()} == {"champion": 1, "challenger": 1}  # the sample's champion is untouched
    others = client.get_registered_model(f"{NAME}-other_ratings")
    assert {k: int(v) for k, v in others.aliases.items()} == {"champion": 1, "challenger": 1}
    a, b = client.get_model_version(NAME, "1").tags, client.get_model_version(f"{NAME}-other_ratings", "1").tags
    assert a["anime_recs.source"] == "sample" and b["anime_recs.source"] == str(other)
    assert a["anime_recs.test_checksum"] != b["anime_recs.test_checksum"]
