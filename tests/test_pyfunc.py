"""The MLflow Model (anime_recs.serve.pyfunc) and the registry's promotion gate (anime_recs.pipeline.registry).

The served test starts the real ``mlflow models serve -m models:/anime_recs@champion
--env-manager local`` on 127.0.0.1 and queries it over HTTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import mlflow
import pytest

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.pipeline.registry import NAME, promotion_gate
from anime_recs.serve.pyfunc import log_pyfunc_model
from anime_recs.pipeline.tracking import run_step
from tests.serve_world import FIRST_USER, free_port, publish_world, start_server, stop_server, world

GENRE_OF = {row.MAL_ID: row.Genres.split(",")[0] for row in world()[1].itertuples()}


@pytest.fixture()
def store(store_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``store_env`` without W&B: these tests are about MLflow's registry (W&B logging is tested in
    test_backends), and three offline W&B runs cost ~5 s of start-up and a service process."""
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "disabled")
    return store_env


def _register(root: Path, family: str = "hybrid", seed: int = 0) -> str:
    """Publish a world, then log + register its pyfunc model the way the neural_network step does."""
    ref = publish_world(root, family, seed)
    store = ArtifactStore(root)
    model = store.get(ref)
    stats_ref = model.metadata["input"]["preprocessed_stats.parquet"]
    with mlflow.start_run():
        version = log_pyfunc_model(model.path, store.get(stats_ref).file(), store.get("all_anime.csv:latest").file(),
                                   store.get("synopses.csv:latest").file(), ref, FIRST_USER, stats_ref)
    return str(version)


def _gate(ndcg: float) -> dict:
    def body(ctx: object) -> dict:
        stats = ArtifactStore().latest_version("preprocessed_stats.parquet")
        ctx.use_artifact(f"preprocessed_stats.parquet:v{stats}")  # type: ignore[attr-defined]
        return promotion_gate(ctx, ndcg, 10)  # type: ignore[arg-type]

    return run_step("evaluate", {}, body)


def _aliases() -> dict[str, str]:
    return {alias: str(version) for alias, version in mlflow.MlflowClient().get_registered_model(NAME).aliases.items()}


def test_champion_moves_only_when_not_worse(store: Path) -> None:
    first = _register(store)
    assert _aliases() == {"challenger": first}
    assert _gate(0.50)["gate.promoted"] == 1.0
    second = _register(store, "ease", seed=1)
    worse = _gate(0.40)
    assert worse["gate.promoted"] == 0.0 and worse["gate.champion_ndcg_at_10"] == pytest.approx(0.50)
    assert _aliases() == {"champion": first, "challenger": second}
    client = mlflow.MlflowClient()
    assert client.get_model_version(NAME, second).tags["anime_recs.test_ndcg"] == "0.400000"
    assert _gate(0.50)["gate.promoted"] == 1.0  # the same challenger again, now equal: "not worse" is promoted
    assert _aliases() == {"champion": second, "challenger": second}
    assert client.get_model_version(NAME, second).tags["anime_recs.test_ndcg"] == "0.500000"
    run = client.search_runs([client.get_experiment_by_name("Default").experiment_id], order_by=["start_time DESC"])[0]
    assert run.data.metrics["gate.challenger_ndcg_at_10"] == pytest.approx(0.5)


def test_pyfunc_model_answers_in_process(store: Path) -> None:
    version = _register(store)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    import pandas as pd

    similar = model.predict(pd.DataFrame({"query": ["cowboy bebop"]}), params={"kind": "similar_anime", "n": 4})
    assert len(similar) == 4 and sum(GENRE_OF[i] == "Action" for i in similar["id"]) >= 3
    new = model.predict(pd.DataFrame({"query": ["Toradora", "Clannad"], "rating": [10.0, 9.0]}), params={"kind": "new_user", "n": 3})
    assert all(GENRE_OF[i] == "Romance" for i in new["id"]) and new["explanation"].str.startswith("like ").all()
    assert "params" in model.metadata.get_input_schema().to_dict()[0] or model.metadata.get_params_schema() is not None
    with pytest.raises(mlflow.exceptions.MlflowException, match="unknown kind"):
        model.predict(pd.DataFrame({"query": ["1"]}), params={"kind": "nonsense"})
    # The requirements are listed, not inferred: pinned to what is installed, faiss (imported only at scale) included.
    import numpy as np

    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{NAME}/{version}")).read_text().split()
    assert f"numpy=={np.__version__}" in requirements and f"mlflow=={mlflow.__version__}" in requirements
    assert any(r.startswith("faiss-cpu==") for r in requirements), requirements


@pytest.mark.slow  # a real `mlflow models serve` process, like the `mlflow run` end-to-end tests
def test_mlflow_models_serve_champion(store: Path) -> None:
    _register(store)
    _gate(0.3)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager",
                         "local", "-h", "127.0.0.1", "-p", str(port)], f"{base}/ping", timeout=180)
    try:
        body = {"dataframe_split": {"columns": ["query"], "data": [[str(FIRST_USER + 2)]]}, "params": {"kind": "recommend", "n": 5}}
        answer = httpx.post(f"{base}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["predictions"]
        assert len(rows) == 5 and sum(GENRE_OF[r["id"]] == "Horror" for r in rows) >= 4
        bad = httpx.post(f"{base}/invocations", json={**body, "params": {"kind": "recommend", "genres": "va#mpire"}}, timeout=60)
        assert bad.status_code == 400 and "unknown genre" in bad.text
    finally:
        stop_server(proc)
