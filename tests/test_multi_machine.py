"""Artifacts that travel: the pipeline against a real ``mlflow server`` on 127.0.0.1, no shared local store.

The server keeps its own ``--artifacts-destination``; every "machine" below is a fresh
working folder with its own (or no) local store, so a step can only get its inputs from
the server. One module-scoped pipeline run feeds the tests.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, child_env

from anime_recs.core.options import STEPS as ALL_STEPS  # noqa: E402

STEPS = ["download", "preprocess", "neural_network", "similar_anime"]
SMALL = ["data.sample_users=300", "data.sample_anime=300", "data.sample_mean_items=40", "data.num_reviews=10"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real MLflow tracking server with its own artifact destination; yields (uri, artifact folder)."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                                 "--artifacts-destination", str(folder / "store"), "--workers", "1"],
                                cwd=folder, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (folder / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield uri, folder / "store"
    finally:
        proc.terminate()
        proc.wait(30)


def machine(folder: Path, uri: str, *overrides: str, store: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python main.py`` in a fresh folder talking only to the server (its own local cache, or none)."""
    folder.mkdir(parents=True)
    env = child_env(MLFLOW_TRACKING_URI=uri, ANIME_RECS_WANDB_MODE="disabled")
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        env.pop(key, None)
    if store is not None:
        env["ANIME_RECS_ARTIFACTS"] = str(store)
    return subprocess.run([sys.executable, str(REPO / "main.py"), "main.artifact_backend=mlflow", *SMALL, *overrides],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pipeline(server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """download, preprocess, neural_network, similar_anime: one step process each, no local store at all."""
    work = tmp_path_factory.mktemp("machines") / "a"
    result = machine(work, server[0], f"main.execute_steps='{','.join(STEPS)}'")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return work


def runs(uri: str) -> dict[str, list]:
    """Runs on the server by name, oldest first."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found: dict[str, list] = {}
    for run in sorted(client.search_runs(experiments, max_results=1000), key=lambda r: r.info.start_time):
        found.setdefault(run.data.tags.get("mlflow.runName", ""), []).append(run)
    return found


@pytest.mark.slow
def test_steps_get_their_inputs_from_the_server_with_exact_lineage(pipeline: Path, server: tuple[str, Path]) -> None:
    uri, store = server
    assert not (pipeline / "artifacts").exists() and not (pipeline / "mlflow.db").exists()
    assert not [s for s in ALL_STEPS if (REPO / s / "artifacts").exists()], "a step wrote a local store"
    by_name = runs(uri)
    produced: dict[str, str] = {}
    for step in STEPS:
        (run,) = by_name[step]
        tags, params = run.data.tags, run.data.params
        assert tags["anime_recs.artifact_backend"] == "mlflow"
        used = {k.removeprefix("input."): v for k, v in params.items() if k.startswith("input.")}
        assert used == {name: produced[name] for name in used}, step  # exactly what the earlier steps published
        assert sorted(d.dataset.name for d in run.inputs.dataset_inputs) == sorted(used.values())
        outputs = {k.removeprefix("output."): v for k, v in tags.items() if k.startswith("output.")}
        assert outputs and all(ref.endswith(":v0") for ref in outputs.values())
        for name, ref in outputs.items():
            assert tags[f"artifact.{name}.version"] == "0" and len(tags[f"artifact.{name}.sha256"]) == 64
            files = [f.path for f in MlflowClient(uri).list_artifacts(run.info.run_id, name)]
            assert f"{name}/manifest.json" in files and len(files) >= 2  # the files live on the server
        produced.update(outputs)
    assert set(produced) >= {"user_stats.parquet", "preprocessed_stats.parquet", "anime_nn_embeddings", "similar_anime.csv"}
    assert list(store.rglob("user_stats.parquet")), "the server's artifact destination holds the files"
    (parent,) = by_name["pipeline"]
    shown = [f.path for f in MlflowClient(uri).list_artifacts(parent.info.run_id, "config")]
    assert shown == ["config/overrides.yaml", "config/resolved_config.yaml"]
    assert "tables/similar_anime.json" in [f.path for f in MlflowClient(uri).list_artifacts(by_name["similar_anime"][0].info.run_id, "tables")]


@pytest.mark.slow
def test_another_machine_downloads_verified_inputs_then_refuses_a_tampered_one(pipeline: Path, server: tuple[str, Path]) -> None:
    uri, store = server
    cache = pipeline.parent / "b-cache"
    other = machine(pipeline.parent / "b", uri, "main.execute_steps=similar_anime", "similarity.anime_query='Silent Mobius'",
                    store=cache)
    assert other.returncode == 0, other.stderr[-3000:]
    assert sorted(p.parent.parent.name for p in cache.glob(".remote/mlflow/*/v0/manifest.json")) == [
        "all_anime.csv", "anime_nn_embeddings", "preprocessed_stats.parquet", "synopses.csv"]
    assert not [p for p in cache.iterdir() if p.name != ".remote" and not p.name.startswith(".")]  # nothing published locally
    assert runs(uri)["similar_anime"][-1].data.tags["output.similar_anime.csv"] == "similar_anime.csv:v1"

    (stored,) = [p for p in store.rglob("*.parquet") if p.parent.name == "preprocessed_stats.parquet"]
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    bad = machine(pipeline.parent / "c", uri, "main.execute_steps=similar_anime")
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert errors and "preprocessed_stats.parquet:v0" in errors[0] and "does not match its digest" in errors[0], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
    assert [r.data.tags.get("output.similar_anime.csv") for r in runs(uri)["similar_anime"]][-1] is None  # nothing published


def test_unreachable_tracking_server_stops_the_pipeline_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    result = machine(tmp_path / "m", f"http://127.0.0.1:{port}", "main.execute_steps=download", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach the MLflow tracking server http://127.0.0.1:{port} (Connection refused); start it "
        f"(`mlflow server --host 127.0.0.1 --port {port} --artifacts-destination DIR`) or fix MLFLOW_TRACKING_URI"]
    assert list((tmp_path / "m").iterdir()) == []  # nothing written
