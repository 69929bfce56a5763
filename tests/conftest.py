"""Shared fixtures: an isolated artifact store and MLflow store per test, paths to real data."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def download_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test downloads through a cache of its own (never the user's ~/.cache)."""
    folder = tmp_path / "download-cache"
    monkeypatch.setenv("ANIME_RECS_DOWNLOAD_CACHE", str(folder))
    return folder


@pytest.fixture(autouse=True)
def fresh_mlflow_state() -> Iterator[None]:
    """Forget the MLflow experiment a test selected (``mlflow.set_experiment`` is process-global, env var included).

    Regression: under ``pytest -n`` a test ran after another one in the same worker and looked
    for that test's experiment id in its own, fresh tracking store ("No Experiment with id=1").
    """
    before = os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.tracking.fluent._active_experiment_id = None
    # set_experiment also exports MLFLOW_EXPERIMENT_ID "so that subprocesses inherit it": a later
    # test's step subprocess then looked for that experiment in its own store.
    if before is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = before


@pytest.fixture()
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point artifacts, MLflow and W&B at a temp folder; return the artifact root."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("ANIME_RECS_ARTIFACTS", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


@pytest.fixture(scope="session")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow sqlite store for the in-process step runs of the session (creating one costs ~7 s of migrations).

    Its default experiment keeps artifacts in ``mlruns/`` beside the database.
    """
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    here = Path.cwd()
    os.chdir(folder)  # the default experiment's artifact location is ./mlruns of where the store is created
    try:
        MlflowClient(uri).search_experiments()
    finally:
        os.chdir(here)
    return uri


@pytest.fixture()
def mal_data() -> Path:
    """The real MyAnimeList files beside the repo (skips when absent)."""
    folder = SHARED_DATA / "mal2020"
    if not (folder / "animelist_head100k.csv").is_file():
        pytest.skip("../shared/data/mal2020 is not present")
    return folder


def child_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def step_module(step: str) -> ModuleType:
    """A step's entry script (``<step>/<step>.py``) imported in-process, to run its ``main``/``parse_args``."""
    spec = importlib.util.spec_from_file_location(f"step_script_{step}", REPO / step / f"{step}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
