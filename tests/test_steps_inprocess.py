"""Every step body in-process (the fast lane): the real entry scripts' ``main`` through ``StepContext``.

A temporary artifact store and an MLflow experiment of its own in the session's sqlite store; the same steps through
``mlflow run`` subprocesses are in tests/test_steps_e2e.py (slow lane).
"""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pandas as pd
import pytest

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.core.errors import ArtifactError
from tests.conftest import REPO, step_module

CONFIG = str(REPO / "config" / "config.yaml")
# The default family (hybrid) with 2 ALS sweeps of 16 factors instead of 10 of 64: these tests check what the
# steps publish and record, not the model's quality (fitting it twice, in neural_network and evaluate, was ~2 s).
CHEAP_HYBRID = "rating.iterations=2 rating.factors=16"
ARGS = {
    "download": ["--sample_users", "200", "--sample_anime", "150", "--sample_mean_items", "30"],
    "preprocess": ["--num_reviews", "5"],
    "neural_network": ["--model_config", CONFIG, "--overrides", CHEAP_HYBRID],
    "evaluate": ["--model_config", CONFIG, "--overrides", CHEAP_HYBRID],
    "similar_anime": ["--anime_query", "Rental Magica"],
    "similar_users": ["--user_query", "null", "--random_user", "true"],
    "user_prefs": [],
    "user_recs": [],
    "model_recs": [],
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, tracking_db: str) -> Iterator[tuple[ArtifactStore, dict[str, str]]]:
    """Run the nine steps in pipeline order in this process; yield the store and each step's MLflow run id."""
    work = tmp_path_factory.mktemp("inprocess")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANIME_RECS_ARTIFACTS", str(work / "artifacts"))
        patch.setenv("MLFLOW_TRACKING_URI", tracking_db)
        # This module's runs only, their artifacts in its temporary folder (an experiment MLflow creates from the
        # name alone keeps them in ./mlruns of the working directory: the checkout).
        mlflow.MlflowClient(tracking_db).create_experiment(f"inprocess-{work.name}", artifact_location=(work / "mlruns").as_uri())
        patch.setenv("MLFLOW_EXPERIMENT_NAME", f"inprocess-{work.name}")
        patch.setenv("ANIME_RECS_WANDB_MODE", "disabled")
        for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "ANIME_RECS_ARTIFACT_BACKEND", "ANIME_RECS_PARENT_RUN_ID"):
            patch.delenv(key, raising=False)
        for step, args in ARGS.items():
            step_module(step).main(args)
        runs = mlflow.search_runs(experiment_names=[f"inprocess-{work.name}"], output_format="list")
        yield ArtifactStore(work / "artifacts"), {r.data.tags["mlflow.runName"]: r.info.run_id for r in runs}


def test_every_step_publishes_and_records_exact_inputs(ran: tuple[ArtifactStore, dict[str, str]]) -> None:
    store, run_ids = ran
    assert sorted(run_ids) == sorted(ARGS)
    for name in ("user_stats.parquet", "preprocessed_stats.parquet", "anime_nn_embeddings", "evaluation_metrics.csv",
                 "similar_anime.csv", "similar_users.csv", "ID_used.csv", "user_prefs_clouds", "user_recs.csv", "model_recs.csv"):
        assert store.get(f"{name}:latest").version == 0, name
    client = mlflow.tracking.MlflowClient()
    model_recs = client.get_run(run_ids["model_recs"])
    assert model_recs.data.params["input.anime_nn_embeddings"] == "anime_nn_embeddings:v0"
    assert {d.dataset.name for d in model_recs.inputs.dataset_inputs} >= {"anime_nn_embeddings:v0", "preprocessed_stats.parquet:v0"}
    used = int(pd.read_csv(store.get("ID_used.csv:latest").file())["user_id"].iloc[0])
    assert store.get("model_recs.csv:latest").metadata["user_id"] == used  # later steps used the similar_users step's user


def test_result_tables_are_shown_in_mlflow(ran: tuple[ArtifactStore, dict[str, str]]) -> None:
    store, run_ids = ran
    table = mlflow.load_table("tables/evaluation_metrics.json", run_ids=[run_ids["evaluate"]])
    assert {"GlobalMean", "ours"} <= set(table["model"])
    similar = mlflow.load_table("tables/similar_anime.json", run_ids=[run_ids["similar_anime"]])
    assert len(similar) == len(pd.read_csv(store.get("similar_anime.csv:latest").file()))
    files = [f.path for f in mlflow.tracking.MlflowClient().list_artifacts(run_ids["download"], "user_stats.parquet")]
    assert files == ["user_stats.parquet/manifest.json"]  # a manifest, not a second copy of the data


NETWORK = "family=original epochs=2 embedding_size=8 batch_size=256 stream_above_rows=0 test_size=0.1 jit_compile=false"


def _network_outputs(prefix: str) -> str:
    names = {"model_artifact": "nn.keras", "weights_artifact": "nn.weights.h5", "history_csv": "nn_history.csv",
             "loss_plot": "nn_loss.png", "embeddings_artifact": "nn_embeddings"}
    return " ".join(f"{key}={prefix}_{value}" for key, value in names.items())


def test_the_network_streams_a_table_above_stream_above_rows(ran: tuple[ArtifactStore, dict[str, str]]) -> None:
    store, _ = ran
    step_module("neural_network").main(["--model_config", CONFIG, "--overrides", f"{NETWORK} {_network_outputs('streamed')}"])
    model = store.get("streamed_nn.keras:latest")
    stats = pd.read_parquet(store.get("preprocessed_stats.parquet:latest").file())
    test_rows = pd.read_parquet(model.file("test_split.parquet"))
    assert 0.05 < len(test_rows) / len(stats) < 0.15 and list(test_rows.columns) == list(stats.columns)
    assert model.metadata["fit"]["epochs_run"] == 2
    assert store.get("streamed_nn_embeddings:latest").version == 0


@pytest.mark.parametrize("stream", ["0", "null"])
def test_only_the_chief_worker_publishes(ran: tuple[ArtifactStore, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
                                         stream: str) -> None:
    import anime_recs.models.network.architecture

    monkeypatch.setattr(anime_recs.models.network.architecture, "is_chief", lambda strategy: False)  # as worker 1 of a cluster sees it
    # One epoch of 1024-row batches: what a worker publishes does not depend on how long it trained.
    overrides = f"{NETWORK} epochs=1 batch_size=1024 stream_above_rows={stream} {_network_outputs('worker1')}"
    step_module("neural_network").main(["--model_config", CONFIG, "--overrides", overrides])
    store, _ = ran
    with pytest.raises(ArtifactError):
        store.get("worker1_nn_embeddings:latest")
    with pytest.raises(ArtifactError):
        store.get("worker1_nn.keras:latest")
