"""The whole pipeline on a small sample through `mlflow run`, then each recommender step's bad inputs.

One module-scoped pipeline run feeds every test here (training once keeps CI fast).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anime_recs.store.artifacts import ArtifactStore
from tests.conftest import REPO, child_env
from tests.test_pipeline import assert_one_line_error, mlflow_run, runs_table

SMALL = "data.sample_users=400 data.sample_anime=200 data.sample_mean_items=60 data.num_reviews=10"
ALL_STEPS = ["download", "preprocess", "neural_network", "evaluate", "similar_anime", "similar_users", "user_prefs", "user_recs", "model_recs"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run all eight steps once; return the folder holding mlflow.db and artifacts/."""
    work = tmp_path_factory.mktemp("pipeline")
    result = mlflow_run(str(REPO), work, "-P", f"hydra_options={SMALL}", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    (work / "run.log").write_text(result.stdout + result.stderr)
    return work


def step_env(work: Path) -> dict[str, str]:
    env = child_env(ANIME_RECS_ARTIFACTS=str(work / "artifacts"), MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                    ANIME_RECS_WANDB_MODE="disabled")
    env.pop("MLFLOW_RUN_ID", None)
    return env


def run_script(step: str, *args: str, work: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"{step}.py", *args], cwd=REPO / step, env=step_env(work),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_all_steps_publish_their_artifacts_nested_under_one_run(pipeline: Path) -> None:
    store = ArtifactStore(pipeline / "artifacts")
    log = (pipeline / "run.log").read_text()
    # W&B's mode in one line: the test environment has no key, so offline, with where the runs are and how to sync.
    assert any(line.startswith("W&B: ") and "wandb sync " in line for line in log.splitlines()) or "W&B: disabled" in log
    # The default family (hybrid) trains no network: no history, loss plot or weights.
    assert not {"anime_nn_history.csv", "anime_nn_loss.png", "anime_nn.weights.h5"} & set(store.names())
    for name in ("anime_nn.keras", "anime_nn_embeddings", "evaluation_metrics.csv", "similar_anime.csv",
                 "similar_users.csv", "ID_used.csv", "user_prefs.csv", "user_prefs_clouds", "user_recs.csv", "user_recs_clouds",
                 "model_recs.csv"):
        assert store.get(f"{name}:latest").version == 0, name
    runs = runs_table(pipeline / "mlflow.db")
    parent = next(r for r in runs.values() if r.get("anime_recs.pipeline.steps") == ",".join(ALL_STEPS))
    children = sorted(r["mlflow.runName"] for r in runs.values() if r.get("mlflow.parentRunId") == parent["run_id"])
    assert children == sorted(ALL_STEPS)
    con = sqlite3.connect(pipeline / "mlflow.db")
    try:
        kinds = {v for (v,) in con.execute("select value from experiment_tags where key = 'mlflow.experimentKind'")}
        parent_metrics = {k for (k,) in con.execute("select key from latest_metrics where run_uuid = ?", (parent["run_id"],))}
        prefs_run = next(r["run_id"] for r in runs.values() if r.get("mlflow.runName") == "user_prefs"
                         and r.get("mlflow.parentRunId") == parent["run_id"])
        artifact_uri = con.execute("select artifact_uri from runs where run_uuid = ?", (prefs_run,)).fetchone()[0]
    finally:
        con.close()
    assert kinds == {"custom_model_development"}  # the MLflow UI opens its classic ML view
    assert {"ours.nDCG_at_10", "ours.RMSE", "evaluate.seconds"} <= parent_metrics  # a sweep compares pipelines
    figures = list(Path(artifact_uri.removeprefix("file://")).glob("figures/user_prefs_clouds/*.png"))
    assert figures and all(f.read_bytes()[:4] == b"\x89PNG" for f in figures)
    metrics = pd.read_csv(store.get("evaluation_metrics.csv:latest").file()).set_index("model")
    assert set(metrics.index) == {"GlobalMean", "Popularity", "UserItemBias", "ours", "ours-similar-users"}
    assert metrics.loc["ours", "RMSE"] < metrics.loc["UserItemBias", "RMSE"] < metrics.loc["GlobalMean", "RMSE"]
    assert metrics.loc["ours", "nDCG@10"] > metrics.loc["Popularity", "nDCG@10"]
    clouds = store.get("user_prefs_clouds:latest")
    assert all(clouds.file(f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in clouds.files)
    # later steps used the similar_users step's user
    used = int(pd.read_csv(store.get("ID_used.csv:latest").file())["user_id"].iloc[0])
    assert store.get("model_recs.csv:latest").metadata["user_id"] == used
    assert store.get("user_recs.csv:latest").metadata["user_id"] == used


@pytest.mark.slow
def test_model_beats_global_mean_and_reloads_in_a_fresh_process(pipeline: Path) -> None:
    store = ArtifactStore(pipeline / "artifacts")
    model = store.get("anime_nn.keras:latest", "model")
    metrics = model.metadata["metrics"]
    assert model.metadata["family"] == "hybrid" and metrics["test_rmse"] < metrics["global_mean_rmse"]
    code = f"""
import json, sys, numpy as np, pandas as pd
from anime_recs.models import load_model
from anime_recs.data.preprocess import Scaling
from anime_recs.pipeline.steps.neural_network import prediction_metrics
m = load_model(__import__("pathlib").Path({str(store.get("anime_nn_embeddings:latest").path)!r}))
folder = {str(model.path)!r}
test = pd.read_parquet(folder + "/test_split.parquet")
scaling = Scaling(**json.load(open(folder + "/scaling.json")))
pred = m.predict(m.users.transform(test.user_id.to_numpy()), m.items.transform(test.anime_id.to_numpy()))
out = prediction_metrics(scaling.to_scaled(pred), scaling.to_scaled(test.rating.to_numpy()), scaling, "test")
print(json.dumps({{**out, "tensorflow": "tensorflow" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert again["tensorflow"] is False
    for key in ("test_mse", "test_rmse", "test_mae"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-5), key


@pytest.mark.slow
def test_similar_anime_finds_the_planted_cluster(pipeline: Path) -> None:
    store = ArtifactStore(pipeline / "artifacts")
    table = pd.read_csv(store.get("similar_anime.csv:latest").file())
    query = store.get("similar_anime.csv:latest").metadata["query_name"]
    assert query == "Rental Magica" and len(table) == 10
    anime = pd.read_csv(store.get("all_anime.csv:latest").file())
    query_genres = set(anime.loc[anime["Name"] == query, "Genres"].iloc[0].split(", "))
    shares = table["Genres"].str.split(", ").map(lambda g: bool(query_genres & set(g)))
    assert shares.mean() >= 0.8  # neighbours come from the query's genre cluster


@pytest.mark.slow
def test_recommender_bad_inputs_are_one_line_errors(pipeline: Path) -> None:
    store = ArtifactStore(pipeline / "artifacts")
    before = {name: len(store.versions(name)) for name in store.names()}
    assert_one_line_error(run_script("similar_anime", "--anime_query", "Rental Magicka", work=pipeline), "Rental Magica")
    assert_one_line_error(run_script("similar_users", "--user_query", "99999999", work=pipeline), "99999999")
    assert_one_line_error(run_script("model_recs", "--specify_genres", "true", "--model_genres", "va#mpire", work=pipeline),
                          "unknown genre")
    assert_one_line_error(run_script("similar_anime", "--spec_types", "true", "--types", "Cartoon", work=pipeline), "Cartoon")
    assert_one_line_error(run_script("model_recs", "--min_score", "9.99", "--max_score", "10", work=pipeline), "score")
    after = {name: len(store.versions(name)) for name in store.names()}
    assert after == before  # no bad input published anything


@pytest.mark.slow
def test_model_not_matching_the_preprocessed_data_is_refused(pipeline: Path) -> None:
    other = run_script("preprocess", "--num_reviews", "40", work=pipeline)
    assert other.returncode == 0, other.stderr[-2000:]
    # The model answers with its own data (preprocessed_stats.parquet:v0), whatever is newest; an exact other
    # version given on purpose is checked against it and refused.
    own = run_script("model_recs", work=pipeline)
    assert own.returncode == 0 and "using preprocessed_stats.parquet:v0" in own.stdout, own.stderr[-2000:]
    newer = f"preprocessed_stats.parquet:v{ArtifactStore(pipeline / 'artifacts').latest_version('preprocessed_stats.parquet')}"
    assert_one_line_error(run_script("model_recs", "--main_df", newer, work=pipeline), "was trained on preprocessed_stats.parquet:v0")


@pytest.mark.slow
def test_single_steps_through_mlflow(pipeline: Path) -> None:
    alone = mlflow_run(str(REPO / "similar_anime"), pipeline, "-P", "anime_query=kukan rondo",
                       "-P", "main_df=preprocessed_stats.parquet:v0")
    assert alone.returncode == 0, alone.stderr[-3000:]
    store = ArtifactStore(pipeline / "artifacts")
    assert store.get("similar_anime.csv:latest").metadata["query_name"] == "Kūkan☆Rondo"
    hydra = mlflow_run(str(REPO), pipeline, "-P", "hydra_options=main.execute_steps='similar_anime' "
                       "similarity.anime_query='Silent Mobius' data.preprocessed_artifact_latest='preprocessed_stats.parquet:v0'")
    assert hydra.returncode == 0, hydra.stderr[-3000:]
    assert store.get("similar_anime.csv:latest").metadata["query_name"] == "Silent Möbius"


@pytest.mark.slow
def test_kill_9_during_training_then_resume(pipeline: Path) -> None:
    store = ArtifactStore(pipeline / "artifacts")
    versions = len(store.versions("anime_nn.keras"))
    args = ["--input_data", "preprocessed_stats.parquet:v0", "--overrides",
            "family=original epochs=8 embedding_size=32 batch_size=256 resume=true patience=8"]
    proc = subprocess.Popen([sys.executable, "neural_network.py", *args], cwd=REPO / "neural_network", env=step_env(pipeline),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.startswith("epoch 3/") or time.time() > deadline:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)
    assert proc.returncode == -9
    assert len(store.versions("anime_nn.keras")) == versions  # nothing half-published
    rerun = run_script("neural_network", *args, work=pipeline, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resum" in (rerun.stdout + rerun.stderr).lower()
    assert len(store.versions("anime_nn.keras")) == versions + 1
    history = pd.read_csv(store.get("anime_nn_history.csv:latest").file())
    assert np.array_equal(history["epoch"].to_numpy(), np.arange(len(history))) or history["epoch"].is_monotonic_increasing
    # The network's Keras model reloads in a fresh process and reproduces the logged test metrics.
    model = store.get("anime_nn.keras:latest", "model")
    assert model.metadata["family"] == "original"
    code = f"""
import json, numpy as np, pandas as pd, keras
from anime_recs.core.encoding import IdEncoder
from anime_recs.data.preprocess import Scaling
from anime_recs.pipeline.steps.neural_network import prediction_metrics
folder = {str(model.path)!r}
m = keras.models.load_model(folder + "/model.keras")
users = IdEncoder.load(folder + "/user_ids.npy"); anime = IdEncoder.load(folder + "/anime_ids.npy")
test = pd.read_parquet(folder + "/test_split.parquet")
scaling = Scaling(**json.load(open(folder + "/scaling.json")))
pred = m.predict({{"user": users.transform(test.user_id.to_numpy()), "anime": anime.transform(test.anime_id.to_numpy())}},
                 batch_size=65536, verbose=0).ravel()
print(json.dumps(prediction_metrics(pred, scaling.to_scaled(test.rating.to_numpy()), scaling, "test")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    again = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("test_mse", "test_bce", "test_rmse", "test_mae"):
        assert again[key] == pytest.approx(model.metadata["metrics"][key], rel=1e-4), key
