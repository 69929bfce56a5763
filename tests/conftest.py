"""Shared fixtures: an isolated artifact store and MLflow store per test, paths to real data."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

#: Files run longest first under xdist (tests/durations.py).
pytest_plugins = ["tests.durations"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def one_numba_thread() -> None:
    """One Numba thread per test process, as test.sh gives each one BLAS and one TensorFlow op thread.

    xdist runs a worker per core, and the fast path's kernels open a parallel region about three times
    a step: with a thread per core in every worker, each region waits at its barrier for a thread that
    another process has preempted (a 4-epoch fit of tests/test_training.py took 5-15 s instead of about
    1.5 s on the 2-core machine). The results do not depend on the thread count, and
    test_lazy_step_does_not_depend_on_the_thread_count checks that with every thread Numba has.
    """
    import numba

    numba.set_num_threads(1)


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


@pytest.fixture(scope="session")
def empty_tracking_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables created once per session (MLflow's migrations take ~2 s of CPU).

    Under xdist the workers share one: the first to need it builds it (under a lock, published by a
    rename) in the folder above their own temporary folders, which pytest shares between them.
    """
    import fcntl

    from mlflow.tracking import MlflowClient

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    db = shared / "tracking-template.db"
    with open(shared / "tracking-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not db.is_file():
            building = tmp_path_factory.mktemp("tracking-template") / "mlflow.db"
            MlflowClient(f"sqlite:///{building}").search_experiments()
            os.replace(building, db)
    return db


def copy_tracking_db(template: Path, folder: Path) -> str:
    """A fresh MLflow sqlite store in ``folder`` (a copy of ``template``); returns its URI.

    Its default experiment keeps artifacts in ``folder/mlruns``, where MLflow puts them when it
    creates a store with ``folder`` as the working directory.
    """
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    shutil.copyfile(template, db)
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(folder / "mlruns" / "0"),))
    return f"sqlite:///{db}"


@pytest.fixture()
def tracking_uri(tmp_path: Path, empty_tracking_db: Path) -> str:
    """A fresh MLflow sqlite store of this test's own, in ``tmp_path``."""
    return copy_tracking_db(empty_tracking_db, tmp_path)


@pytest.fixture()
def store_env(tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point artifacts, MLflow and W&B at a temp folder; return the artifact root."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("ANIME_RECS_ARTIFACTS", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


@pytest.fixture(scope="session")
def tracking_db(tmp_path_factory: pytest.TempPathFactory, empty_tracking_db: Path) -> str:
    """One MLflow sqlite store for the in-process step runs of the session.

    Its default experiment keeps artifacts in ``mlruns/`` beside the database.
    """
    return copy_tracking_db(empty_tracking_db, tmp_path_factory.mktemp("tracking"))


@pytest.fixture()
def mal_data() -> Path:
    """The real MyAnimeList files beside the repo (skips when absent)."""
    folder = SHARED_DATA / "mal2020"
    if not (folder / "animelist_head100k.csv").is_file():
        pytest.skip("../shared/data/mal2020 is not present")
    return folder


@pytest.fixture()
def anime_recs_cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``anime-recs ARGV`` in this process, returned as a CompletedProcess (saves a second of interpreter start-up).

    Tests that use it keep one real subprocess run too, for what the interpreter adds around ``main``.
    """
    from anime_recs.cli.main import main

    def run(*argv: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(argv), code, out.out, out.err)

    return run


@contextlib.contextmanager
def serving(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server with ``handler`` on 127.0.0.1 (a free port, a thread per request) while the block runs.

    Yields its base URL. It checks for shutdown every 20 ms (the default 0.5 s made every teardown wait).
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
