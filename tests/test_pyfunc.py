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
        version = log_pyfunc_model(NAME, model.path, store.get(stats_ref).file(), store.get("all_anime.csv:latest").file(),
                                   store.get("synopses.csv:latest").file(), ref, FIRST_USER, {"anime_recs.input": stats_ref})
    return str(version)


def _gate(ndcg: float, checksum: str = "split-a") -> dict:
    def body(ctx: object) -> dict:
        stats = ArtifactStore().latest_version("preprocessed_stats.parquet")
        ctx.use_artifact(f"preprocessed_stats.parquet:v{stats}")  # type: ignore[attr-defined]
        return promotion_gate(ctx, ndcg, 10, checksum)  # type: ignore[arg-type]

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
    from anime_recs.serve.pyfunc import strict_json
    from anime_recs.serve.schema import PyfuncRow

    for row in strict_json(pd.concat([similar, new])).to_dict("records"):  # the rows the scoring server writes
        PyfuncRow.model_validate(row)
    assert "params" in model.metadata.get_input_schema().to_dict()[0] or model.metadata.get_params_schema() is not None
    with pytest.raises(mlflow.exceptions.MlflowException, match="unknown kind"):
        model.predict(pd.DataFrame({"query": ["1"]}), params={"kind": "nonsense"})
    # The requirements are listed, not inferred: pinned to what is installed, faiss (imported only at scale) included,
    # and the project itself is not one of them: its code is shipped with the model.
    import numpy as np

    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{NAME}/{version}")).read_text().split()
    assert f"numpy=={np.__version__}" in requirements and f"mlflow=={mlflow.__version__}" in requirements
    assert any(r.startswith("faiss-cpu==") for r in requirements), requirements
    assert not any(r.startswith(("anime-recs", "anime_recs", "cloudpickle")) for r in requirements), requirements


def test_model_is_code_not_a_pickle_and_its_files_are_stored_once(store: Path) -> None:
    version = _register(store)
    client = mlflow.MlflowClient()
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}"))  # a local store: the folder itself
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert "code/anime_recs/serve/pyfunc_entry.py" in files and "code/config/config.yaml" in files
    assert not any(name.endswith((".pkl", ".pickle")) or "__pycache__" in name for name in files), sorted(files)
    assert (folder / "MLmodel").read_text().count("model_code_path") == 1
    # MLflow's copy of each model file is a hard link to the artifact store's file: one file on disk.
    model_id = client.get_model_version(NAME, version).source.removeprefix("models:/")
    logged = Path(mlflow.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    bundle = [p for p in logged.rglob("*.npy")]
    assert bundle and all(p.stat().st_nlink >= 2 for p in bundle)
    stored = {(p.stat().st_ino) for p in (store / "anime_nn_embeddings").rglob("*.npy")}
    assert {p.stat().st_ino for p in bundle} <= stored


def test_pyfunc_answers_with_its_own_catalogue_after_newer_data(store: Path, tmp_path: Path) -> None:
    import pandas as pd

    version = _register(store)
    catalogue_a = pd.read_csv(ArtifactStore(store).get("all_anime.csv:v0").file())
    catalogue_a.assign(Name="Other " + catalogue_a["Name"]).to_csv(tmp_path / "b.csv", index=False)
    ArtifactStore(store).log("all_anime.csv", "raw_data", {"all_anime.csv": tmp_path / "b.csv"})  # newer data B
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    similar = model.predict(pd.DataFrame({"query": ["cowboy bebop"]}), params={"kind": "similar_anime", "n": 5})
    recs = model.predict(pd.DataFrame({"query": [str(FIRST_USER)]}), params={"kind": "recommend", "n": 5})
    assert set(similar["name"]) | set(recs["name"]) <= set(catalogue_a["Name"])


def test_answers_are_strict_json(store: Path) -> None:
    import json

    import pandas as pd

    from anime_recs.serve.pyfunc import strict_json

    frame = strict_json(pd.DataFrame({"id": [1, 2], "score": [0.5, float("nan")]}))
    text = json.dumps(frame.to_dict(orient="records"))
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in {text}"))[1]["score"] is None


def _strict(text: str) -> object:
    """Parse with a strict JSON parser: a bare NaN/Infinity fails the test."""
    import json

    return json.loads(text, parse_constant=lambda constant: pytest.fail(f"bare {constant} in {text[:300]}"))


@pytest.mark.slow  # a real `mlflow models serve` process in an environment uv builds (cached after the first run)
def test_mlflow_models_serve_champion_outside_the_checkout(store: Path, tmp_path: Path) -> None:
    import os
    import shutil

    _register(store)
    _gate(0.3)
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # Nothing of the checkout on the path: only the model's own shipped code can answer.
    env = {"PYTHONPATH": "", "VIRTUAL_ENV": "", "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
           "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager",
                         "uv", "-h", "127.0.0.1", "-p", str(port)], f"{base}/ping", timeout=900, env=env, cwd=outside)
    try:
        def ask(columns: list[str], data: list[list], **params: object) -> httpx.Response:
            body = {"dataframe_split": {"columns": columns, "data": data}, "params": params}
            return httpx.post(f"{base}/invocations", json=body, timeout=60)

        answers = {
            "recommend": ask(["query"], [[str(FIRST_USER + 2)]], kind="recommend", n=5),
            "similar_anime": ask(["query"], [["cowboy bebop"]], kind="similar_anime", n=5),
            "similar_users": ask(["query"], [[str(FIRST_USER)]], kind="similar_users", n=5),
            "new_user": ask(["query", "rating"], [["Toradora", 10], ["Clannad", 9]], kind="new_user", n=3),
        }
        for kind, answer in answers.items():
            assert answer.status_code == 200, (kind, answer.text)
            rows = _strict(answer.text)["predictions"]  # type: ignore[index]
            assert rows, kind
        rows = _strict(answers["recommend"].text)["predictions"]  # type: ignore[index]
        assert len(rows) == 5 and sum(GENRE_OF[r["id"]] == "Horror" for r in rows) >= 4
        similar = _strict(answers["similar_anime"].text)["predictions"]  # type: ignore[index]
        assert sum(GENRE_OF[r["id"]] == "Action" for r in similar) >= 4 and all(r["predicted_rating"] is None for r in similar)
        bad = ask(["query"], [[str(FIRST_USER)]], kind="recommend", genres="va#mpire")
        assert bad.status_code == 400 and "unknown genre" in bad.text
    finally:
        stop_server(proc)
