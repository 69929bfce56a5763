"""Artifact backends (anime_recs/pipeline/backends.py) in-process: versions, lineage, digests, one-line errors.

The ``mlflow`` backend runs here against the session's MLflow sqlite store (artifacts in its ``mlruns/``);
tests/test_multi_machine.py runs it against a real ``mlflow server`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.pipeline.backends import manifest_digest, resolve_backend_name
from anime_recs.core.errors import UserInputError
from anime_recs.pipeline.tracking import StepContext, run_step


@pytest.fixture()
def mlruns(tracking_db: str) -> Path:
    """Where the session's MLflow store keeps run artifacts."""
    return Path(tracking_db.removeprefix("sqlite:///")).parent / "mlruns"


@pytest.fixture()
def store_env(store_env: Path, tracking_db: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The conftest fixture on the session's MLflow store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_db)
    return store_env


@pytest.fixture()
def mlflow_backend(store_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The mlflow backend, no local store configured; return the working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANIME_RECS_ARTIFACT_BACKEND", "mlflow")
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "disabled")
    monkeypatch.delenv("ANIME_RECS_ARTIFACTS")
    return tmp_path


def publish(step: str, name: str, text: str) -> dict[str, str]:
    """Run a step in-process that publishes one CSV; return its outputs."""
    def body(ctx: StepContext) -> dict[str, str]:
        path = ctx.workdir / name
        path.write_text(text)
        ctx.log_artifact(name, "table", [path], metadata={"text": text})
        return ctx.outputs
    run_step(step, {}, body)
    return tags_of(step)


def tags_of(step: str) -> dict[str, str]:
    """Tags of the last MLflow run named ``step``."""
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`mlflow.runName` = '{step}'",
                              order_by=["attributes.start_time DESC"], output_format="list")
    return runs[0].data.tags if runs else {}


def consume(step: str, ref: str) -> tuple[str, str]:
    """Run a step in-process that reads ``ref``; return (version used, file text)."""
    seen = {}

    def body(ctx: StepContext) -> None:
        artifact = ctx.use_artifact(ref, "table")
        seen["ref"], seen["text"] = artifact.ref, artifact.file().read_text()
    run_step(step, {}, body)
    return seen["ref"], seen["text"]


def test_mlflow_backend_versions_lineage_and_no_local_store(mlflow_backend: Path) -> None:
    assert publish("make_a", "a.csv", "x\n1\n")["output.a.csv"] == "a.csv:v0"
    tags = publish("make_b", "a.csv", "x\n2\n")
    assert tags["output.a.csv"] == "a.csv:v1" and tags["artifact.a.csv.version"] == "1"
    assert consume("use_latest", "a.csv:latest") == ("a.csv:v1", "x\n2\n")
    assert consume("use_v0", "a.csv:v0") == ("a.csv:v0", "x\n1\n")
    run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`mlflow.runName` = 'use_v0'", output_format="list")[0]
    assert run.data.params["input.a.csv"] == "a.csv:v0"
    datasets = [d.dataset for d in run.inputs.dataset_inputs]
    assert [d.name for d in datasets] == ["a.csv:v0"] and len(datasets[0].digest) == 32
    assert not (mlflow_backend / "artifacts").exists()  # the tracking store's artifacts are the store of record
    with pytest.raises(SystemExit) as ended:
        consume("use_v7", "a.csv:v7")
    assert ended.value.code == 2


def test_mlflow_backend_refuses_a_tampered_download(mlflow_backend: Path, mlruns: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish("make_t", "t.csv", "x\n1\n")
    stored = next(mlruns.glob("**/t.csv/t.csv"))
    stored.chmod(0o644)
    stored.write_text("x\n666\n")
    capsys.readouterr()

    def body(ctx: StepContext) -> None:
        ctx.use_artifact("t.csv:latest")
        path = ctx.workdir / "b.csv"
        path.write_text("y\n")
        ctx.log_artifact("b.csv", "table", [path])
    with pytest.raises(SystemExit) as ended:
        run_step("use_a", {}, body)
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: use_a: artifact t.csv:v0") and "does not match its digest" in err[0]
    assert "output.b.csv" not in tags_of("use_a")  # nothing published


def test_unreachable_tracking_server_is_one_line(store_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ANIME_RECS_ARTIFACT_BACKEND", "mlflow")
    with pytest.raises(SystemExit) as ended:
        run_step("download", {}, lambda ctx: None)
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: download: cannot reach the MLflow tracking server http://127.0.0.1:{port}")
    assert not store_env.exists()


def test_wandb_backend_without_a_key_is_one_line(store_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANIME_RECS_ARTIFACT_BACKEND", "wandb")
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "auto")
    monkeypatch.setenv("NETRC", str(store_env.parent / "no-netrc"))
    with pytest.raises(SystemExit) as ended:
        run_step("download", {}, lambda ctx: None)
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 2 and len(err) == 1
    assert "main.artifact_backend=wandb needs W&B online" in err[0] and "WANDB_API_KEY" in err[0]
    with pytest.raises(UserInputError, match="unknown main.artifact_backend 's3'; choose from: local, mlflow, wandb"):
        resolve_backend_name("s3")


def test_local_backend_logs_a_manifest_not_a_second_copy(store_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "offline")  # W&B gets a reference artifact, not a copy
    publish("make_l", "l.csv", "x\n1\n")
    artifact = ArtifactStore(store_env).get("l.csv:latest")
    run_id = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`mlflow.runName` = 'make_l'",
                                output_format="list")[0].info.run_id
    listed = [f.path for f in MlflowClient().list_artifacts(run_id, "l.csv")]
    assert listed == ["l.csv/manifest.json"]
    record = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="l.csv/manifest.json")).read_text())
    assert record["ref"] == "l.csv:v0" and record["digest"] == manifest_digest(artifact)
    wandb_dirs = list(store_env.parents[1].glob("*/wandb"))  # wandb keeps the WANDB_DIR of its first run in a process
    assert [run for folder in wandb_dirs for run in folder.glob("offline-run-*")]  # W&B did log the run
    staged_copies = [p for folder in wandb_dirs for p in folder.rglob("l.csv") if p.is_file()]
    assert staged_copies == [], staged_copies


def test_log_table_shows_results_in_mlflow_and_wandb(store_env: Path) -> None:
    frame = pd.DataFrame({"MAL_ID": [1, 2], "Name": ["A", None], "Score": [7.5, float("nan")]})
    run_step("table", {}, lambda ctx: ctx.log_table(frame, "similar_anime.csv"))  # W&B offline (store_env)
    # wandb keeps the WANDB_DIR of its first run in a process, so look in every test's folder of this session.
    assert list(store_env.parents[1].glob("*/wandb/offline-run-*/files/media/table/tables/similar_anime_*.table.json"))
    run_id = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`mlflow.runName` = 'table'",
                                output_format="list")[0].info.run_id
    shown = mlflow.load_table("tables/similar_anime.json", run_ids=[run_id])
    assert list(shown["Name"])[:1] == ["A"] and len(shown) == 2


# MLFLOW_LOGGING_LEVEL is what MLflow's other processes (the `mlflow run` launcher of each step) use: quiet, since the
# step says what failed in its own line; this process keeps MLflow's warnings.
@pytest.mark.parametrize(("verbose", "tf_level", "env_level", "mlflow_level"),
                         [("0", "2", "CRITICAL", "WARNING"), ("1", "0", "INFO", "INFO")])
def test_third_party_chatter_is_quiet_unless_verbose(verbose: str, tf_level: str, env_level: str, mlflow_level: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from anime_recs.pipeline.tracking import VERBOSE_ENV, quiet_third_parties

    monkeypatch.setenv(VERBOSE_ENV, verbose)
    for key in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.delenv(key, raising=False)
    level = logging.getLogger().level
    try:
        quiet_third_parties()
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == tf_level and os.environ["MLFLOW_LOGGING_LEVEL"] == env_level
        assert logging.getLogger("mlflow").level == getattr(logging, mlflow_level)
    finally:
        logging.getLogger().setLevel(level)
        logging.getLogger("mlflow").setLevel(logging.WARNING)


def test_the_pipeline_says_where_offline_wandb_runs_are_and_how_to_upload_them(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from anime_recs.pipeline.tracking import wandb_mode_line

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_PROJECT", "anime_recommendations")
    offline = wandb_mode_line("offline", "auto")
    where = tmp_path.resolve() / "runs" / "wandb"
    assert offline == (f"W&B: offline (no W&B API key is configured); runs are kept in {where}; "
                       f"upload them later with: wandb sync {where}/offline-run-*")
    assert "(main.wandb_mode=offline)" in wandb_mode_line("offline", "offline")
    assert wandb_mode_line("online", "auto") == "W&B: online, project anime_recommendations"
    assert wandb_mode_line("disabled", "disabled").startswith("W&B: disabled")
