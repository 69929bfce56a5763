"""One step run: MLflow run + optional W&B run + the artifact store, and clean exits.

Every step script calls :func:`run_step`, which

- starts (or joins, under ``mlflow run``) the MLflow run and tags it with the
  pipeline's parent run so the MLflow UI nests it;
- starts a W&B run in the mode chosen by ``ANIME_RECS_WANDB_MODE``
  (``auto``: online when an API key is configured, else offline; ``online``,
  ``offline``, ``disabled``), grouped by ``WANDB_PROJECT`` / ``WANDB_RUN_GROUP``;
- hands the step a :class:`StepContext` whose ``use_artifact`` reads through the
  artifact backend (``$ANIME_RECS_ARTIFACT_BACKEND``: ``local``, ``mlflow``, ``wandb``;
  see :mod:`anime_recs.pipeline.backends`), records the exact input versions as run parameters
  and as MLflow dataset inputs, and whose ``log_artifact`` stages outputs in one
  artifact-store transaction per step run;
- publishes that transaction through the backend when the step body returns, so a
  step's outputs become visible together (recorded on the MLflow run as
  ``output.<name>`` tags) or, if it fails or is killed, never;
- turns a :class:`~anime_recs.core.errors.UserInputError` into one line on stderr
  and exit status 2.

:func:`ensure_tracking_store` creates a fresh MLflow sqlite store safely when
several processes start at once.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anime_recs.store.artifacts import ROOT_ENV, RUNS_DIR, ArtifactStore, ArtifactVersion
from anime_recs.pipeline.backends import (ArtifactBackend, LocalBackend, check_tracking_server, manifest_digest, open_backend,
                       require_wandb_online, resolve_backend_name, scratch_store)
from anime_recs.core.config import setup_logging
from anime_recs.core.lifeline import watch_pipeline
from anime_recs.core.errors import UserInputError, one_line
from anime_recs.store.locking import file_lock

logger = logging.getLogger(__name__)

PARENT_RUN_ENV = "ANIME_RECS_PARENT_RUN_ID"
WANDB_MODE_ENV = "ANIME_RECS_WANDB_MODE"
WANDB_MODES = ("auto", "online", "offline", "disabled")
VERBOSE_ENV = "ANIME_RECS_VERBOSE"


def wandb_key_configured() -> bool:
    """True when W&B could log online without prompting (env key or netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_wandb_mode(mode: str | None = None) -> str:
    """Turn ``auto`` (or unset) into ``online``/``offline``; validate the others."""
    mode = (mode or os.environ.get(WANDB_MODE_ENV) or "auto").strip().lower()
    if mode not in WANDB_MODES:
        raise UserInputError(f"unknown W&B mode {mode!r}; choose from: {', '.join(WANDB_MODES)}")
    if mode == "auto":
        return "online" if wandb_key_configured() else "offline"
    if mode == "online" and not wandb_key_configured():
        raise UserInputError(
            "main.wandb_mode=online but no W&B API key is configured; run `wandb login` "
            "or set WANDB_API_KEY, or use main.wandb_mode=offline"
        )
    return mode


def wandb_mode_line(mode: str, asked: str) -> str:
    """The one line a pipeline prints about W&B: online, offline (where the runs are, how to upload them) or disabled.

    Args:
        mode: The resolved mode (:func:`resolve_wandb_mode`).
        asked: ``main.wandb_mode`` as configured (``auto`` explains an offline mode by the missing key).
    """
    if mode == "disabled":
        return "W&B: disabled (main.wandb_mode=disabled); MLflow records every run"
    if mode == "online":
        return f"W&B: online, project {os.environ.get('WANDB_PROJECT', 'anime_recommendations')}"
    where = Path(os.environ.get("WANDB_DIR") or ".").resolve() / "wandb"
    why = "no W&B API key is configured" if asked.strip().lower() in ("", "auto") else "main.wandb_mode=offline"
    return f"W&B: offline ({why}); runs are kept in {where}; upload them later with: wandb sync {where}/offline-run-*"


class StepContext:
    """What a step uses to read inputs and publish outputs."""

    def __init__(self, step: str, store: ArtifactStore, mlflow_module: Any, wandb_run: Any | None, wandb_mode: str,
                 backend: ArtifactBackend | None = None) -> None:
        """Open the step's transaction in ``store``; read and publish through ``backend`` (default: the local store)."""
        self.step = step
        self.store = store
        self.backend = backend or LocalBackend(store)
        self._mlflow = mlflow_module
        self._wandb_run = wandb_run
        self._wandb_mode = wandb_mode
        self.inputs: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.txn = store.begin()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"anime_recs_{step}_")
        self.workdir = Path(self._tmp.name)

    def use_artifact(self, ref: str, type: str | None = None) -> ArtifactVersion:
        """Resolve and verify an input artifact; record its exact version and digest on the runs."""
        artifact = self.backend.get(ref, type)
        self.inputs[artifact.name] = artifact.ref
        self._mlflow.log_param(f"input.{artifact.name}"[:250], artifact.ref)
        self._log_dataset(artifact)
        lineage = self.backend.lineage_ref(artifact)
        if lineage and self._wandb_run is not None and self._wandb_mode == "online":
            try:  # lineage only; the backend already gave us the files
                self._wandb_run.use_artifact(lineage)
            except Exception as exc:  # noqa: BLE001 - W&B lineage must never fail a step
                logger.warning("W&B could not record input %s: %s", artifact.ref, exc)
        print(f"using {artifact.ref} ({self.backend.name})", flush=True)
        return artifact

    def _log_dataset(self, artifact: ArtifactVersion) -> None:
        """Show the input in the MLflow UI's dataset panel: name = exact version, digest = content digest."""
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        dataset = MetaDataset(LocalArtifactDatasetSource(str(artifact.path)), name=artifact.ref,
                              digest=manifest_digest(artifact)[:32])
        self._mlflow.log_input(dataset, context=artifact.type, tags={"artifact_backend": self.backend.name})

    def log_artifact(
        self,
        name: str,
        type: str,
        files: list[Path] | dict[str, Path],
        description: str = "",
        metadata: dict[str, Any] | None = None,
        move: bool = False,
    ) -> ArtifactVersion:
        """Stage an output in the step's transaction; it is published when the step body returns.

        The returned version's files can be read at once; other readers see it
        (and the MLflow and W&B runs get it) only after :meth:`commit`. Its metadata records the
        step's inputs so far under ``"input"`` (``name -> name:vN``) unless ``metadata`` has its own.
        """
        # Every output records the exact inputs it was made from (its lineage), unless the step records its own.
        metadata = {"input": dict(self.inputs), **(metadata or {})}
        artifact = self.store.log(name, type, files, description, metadata, move=move, txn=self.txn)
        self.outputs[name] = artifact.ref
        return artifact

    def commit(self) -> None:
        """Publish every staged output at once through the backend, then tag the MLflow run with the versions."""
        published = self.backend.publish(self.txn, self._mlflow, self._wandb_run)
        self._mlflow.set_tags({f"output.{a.name}"[:250]: a.ref for a in published})
        for artifact in published:  # the figures, where people look for them: the step run's artifacts in MLflow
            for filename in artifact.files:
                if filename.lower().endswith(".png") and self.backend.name == "local":  # remote backends upload all
                    self._mlflow.log_artifact(str(artifact.path / filename), artifact_path=f"figures/{artifact.name}")
        for artifact in published:
            self.outputs[artifact.name] = artifact.ref
            print(f"published {artifact.ref}  ({artifact.type}: {', '.join(artifact.files)}; {self.backend.name})", flush=True)

    def log_table(self, frame: Any, name: str) -> None:
        """Show a result table in the MLflow UI (``mlflow.log_table``) and, when W&B is on, as a ``wandb.Table``."""
        table = frame.reset_index(drop=True)
        table.columns = [str(c) for c in table.columns]
        self._mlflow.log_table(table.astype(object).where(table.notna(), None), artifact_file=f"tables/{Path(name).stem}.json")
        if self._wandb_run is not None:
            import wandb

            self._wandb_run.log({f"tables/{Path(name).stem}": wandb.Table(dataframe=table.astype(str))})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics to MLflow (and W&B)."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        self._mlflow.log_metrics(clean, step=step)
        if self._wandb_run is not None:
            self._wandb_run.log(clean if step is None else {**clean, "epoch": step})

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters not logged yet (``mlflow run`` logs the MLproject ones itself)."""
        run = self._mlflow.active_run()
        existing = set(self._mlflow.get_run(run.info.run_id).data.params) if run else set()
        fresh = {k[:250]: str(v)[:6000] for k, v in params.items() if k[:250] not in existing}
        if fresh:
            self._mlflow.log_params(fresh)

    def close(self) -> None:
        """Drop what was staged but not committed, and remove the step's scratch folder."""
        self.txn.abort()
        self._tmp.cleanup()


# What processes racing to create the tables of a fresh sqlite store run into (seen with 2-4 processes).
_CREATION_RACE = ("already exists", "database is locked", "duplicate column name", "Online migration expected")


def ensure_tracking_store(attempts: int = 6) -> None:
    """Create the MLflow sqlite store (tables and migrations) once, safely under concurrency.

    MLflow creates a fresh sqlite store without a lock, so two processes starting
    together can both run its migrations and one fails with ``table
    _alembic_tmp_experiments already exists``. Here the creation runs under a file
    lock beside the database (``mlflow.db.lock``), and a process that still meets the
    race (e.g. against an ``mlflow`` command outside this project) waits and retries.
    Other tracking stores are left to MLflow.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0]).expanduser()
    with file_lock(db.with_name(db.name + ".lock")):
        for attempt in range(attempts):
            try:
                MlflowClient(uri).search_experiments(max_results=1)
                return
            except Exception as exc:  # noqa: BLE001 - sqlalchemy's OperationalError, possibly wrapped by MLflow
                if attempt == attempts - 1 or not any(text in str(exc) for text in _CREATION_RACE):
                    raise
                logger.info("MLflow store %s is being created by another process; retrying", db)
                time.sleep(0.5 * (attempt + 1))


def default_tracking_store(base: Path) -> None:
    """With no tracking URI chosen, keep MLflow's sqlite store in ``runs/`` below where you run (not in the checkout's root).

    ``runs/`` then holds everything a pipeline writes: ``mlflow.db``, ``mlruns/``, ``artifacts/`` (beside the store)
    and W&B's offline runs. A URI set in ``$MLFLOW_TRACKING_URI`` or by ``mlflow run`` is left as it is.
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return
    if "mlflow" in sys.modules:
        from mlflow.tracking import is_tracking_uri_set

        if is_tracking_uri_set():
            return
    runs = (base / RUNS_DIR).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{runs / 'mlflow.db'}"


#: The experiment tag by which the MLflow UI chooses its view; without it MLflow 3 may open the GenAI one.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
#: The classic machine-learning view (runs table, metrics, parameters, artifacts).
ML_EXPERIMENT_KIND = "custom_model_development"


def use_experiment(name: str) -> None:
    """``mlflow.set_experiment(name)``, creating it with its artifacts beside a sqlite store (``mlruns/`` next to
    ``mlflow.db``) rather than in the current folder, MLflow's default."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = mlflow.get_tracking_uri()
    if mlflow.get_experiment_by_name(name) is None and uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):].split("?", 1)[0]).expanduser().resolve()
        try:
            mlflow.create_experiment(name, artifact_location=(db.parent / "mlruns").as_uri())
        except MlflowException:  # another pipeline created it meanwhile
            pass
    mlflow.set_experiment(name)


#: The experiment MLflow puts a run in when nobody chose one (``mlflow run .`` without ``--experiment-name``).
DEFAULT_EXPERIMENT_ID = "0"


def choose_pipeline_experiment(name: str) -> str | None:
    """Make ``name`` (``main.experiment_name``) the experiment of the pipeline's run, whatever the entry point.

    ``python main.py`` starts the run itself. ``mlflow run .`` has already started one, in MLflow's "Default"
    experiment unless ``--experiment-name`` chose another: a run in "Default" is left as a pointer and the pipeline
    runs in ``name`` like ``python main.py`` does; a run in a chosen experiment is the pipeline's run.

    Returns:
        The id of the ``mlflow run`` run left behind (tag it with where the pipeline went), or None.
    """
    from mlflow.tracking import MlflowClient

    outer = os.environ.get("MLFLOW_RUN_ID")
    if outer and MlflowClient().get_run(outer).info.experiment_id != DEFAULT_EXPERIMENT_ID:
        return None  # `mlflow run . --experiment-name X`: the user chose the experiment; the pipeline is that run
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(variable, None)
    use_experiment(name)
    return outer


def mark_ml_experiment(experiment_id: str) -> None:
    """Tag the experiment as a machine-learning one (:data:`ML_EXPERIMENT_KIND`) unless it has a kind already."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if EXPERIMENT_KIND_TAG not in (client.get_experiment(experiment_id).tags or {}):  # a kind set by hand is kept
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, ML_EXPERIMENT_KIND)


def _start_wandb(step: str, params: dict[str, Any], mode: str, store: ArtifactStore) -> Any | None:
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_DIR", str(store.root.parent))
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", "anime_recommendations"),
        group=os.environ.get("WANDB_RUN_GROUP"),
        job_type=step,
        mode=mode,
        config={k: v for k, v in params.items() if isinstance(v, (str, int, float, bool, type(None), list))},
        reinit="finish_previous",
    )


#: Steps whose MLflow run records CPU, memory and disk use (MLflow system metrics).
SYSTEM_METRICS_STEPS = ("neural_network", "evaluate")


def quiet_third_parties() -> None:
    """Silence TensorFlow's C++ INFO/WARNING lines and MLflow's INFO lines unless asked (``main.verbose=true``: ``$ANIME_RECS_VERBOSE``)."""
    verbose = os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true" if verbose else "false")
    # MLflow's own INFO lines ("=== Running command ...", "Creating a new experiment") repeat what we print, and the
    # `mlflow run` process that launches each step logs "=== Run (ID ...) failed ===" under the step's own one-line
    # error: MLflow's processes that do not call this (that launcher) stay quiet; this process shows MLflow's warnings.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    logging.getLogger("mlflow").setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)


def mark_killed(run_ids: list[str]) -> None:
    """Mark MLflow runs as KILLED (a stopped step, its pipeline's run, runs of pipelines killed earlier)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for run_id in dict.fromkeys(run_ids):
        client.set_terminated(run_id, "KILLED")


#: Tag of a step run that ended with a one-line error already shown to the user (its text).
ERROR_TAG = "anime_recs.error"


def _record_error(step: str, message: str) -> None:
    """Tag the step's last MLflow run with its one-line error, so the pipeline does not repeat it (best effort)."""
    try:
        import mlflow

        run = mlflow.last_active_run()
        if run is not None and run.data.tags.get("mlflow.runName") == step:
            mlflow.MlflowClient().set_tag(run.info.run_id, ERROR_TAG, message[:5000])
    except Exception:  # noqa: BLE001 - the error is on the screen already; a tag is a convenience
        logger.debug("could not tag the run with its error", exc_info=True)


def run_step(step: str, params: dict[str, Any], body: Callable[[StepContext], Any]) -> Any:
    """Run ``body`` inside an MLflow (+ W&B) run; one-line errors, exit 2 on bad input.

    The backend (``$ANIME_RECS_ARTIFACT_BACKEND``) is checked before any run starts: an
    unreachable tracking server or a W&B backend without a key ends the step with one line.
    A remote backend stages outputs in a temporary store and keeps verified downloads in
    ``$ANIME_RECS_ARTIFACTS/.remote`` when set (else in the temporary store too).
    """
    setup_logging()
    quiet_third_parties()
    # TF's default CPU allocator page-faults large buffers back in every step (3x slower stock fit, bench/train.py).
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    started = time.perf_counter()
    scratch = None
    try:
        import mlflow

        backend_name = resolve_backend_name()
        mode = resolve_wandb_mode()
        if backend_name == "wandb":
            require_wandb_online(mode)
        check_tracking_server(mlflow.get_tracking_uri())
        if backend_name == "local":
            store = cache = ArtifactStore()
        else:  # outputs are staged in scratch; only verified downloads are kept, and only in a configured root
            store, scratch = scratch_store()
            cache = ArtifactStore() if os.environ.get(ROOT_ENV) else store
        ensure_tracking_store()
        with mlflow.start_run(run_name=step, log_system_metrics=step in SYSTEM_METRICS_STEPS) as run:
            parent = os.environ.get(PARENT_RUN_ENV)
            if parent and parent != run.info.run_id:
                mlflow.set_tag("mlflow.parentRunId", parent)
            # Which environment ran the step (under main.env_manager=uv: the step's own cached one).
            mlflow.set_tags({"anime_recs.step": step, "anime_recs.artifact_backend": backend_name,
                             "anime_recs.python": sys.executable, "anime_recs.environment": sys.prefix,
                             "anime_recs.library": str(Path(__file__).resolve().parents[1])})
            run_id = run.info.run_id
            watch_pipeline(f"step {step}", lambda: mark_killed([run_id, parent or run_id]))
            wandb_run = _start_wandb(step, params, mode, store)
            try:
                ctx = StepContext(step, store, mlflow, wandb_run, mode, open_backend(backend_name, cache, wandb_run, mode))
                try:
                    ctx.log_params(params)
                    result = body(ctx)
                    ctx.commit()
                    ctx.log_metrics({"step_seconds": time.perf_counter() - started})
                finally:
                    ctx.close()
            finally:
                if wandb_run is not None:
                    wandb_run.finish(exit_code=0 if sys.exc_info()[0] is None else 1)
        print(f"{step} finished in {time.perf_counter() - started:.1f} s", flush=True)
        return result
    except UserInputError as exc:
        print(f"error: {step}: {one_line(exc)}", file=sys.stderr, flush=True)
        _record_error(step, one_line(exc))
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"error: {step}: interrupted; nothing of this step run was published, re-run the step", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if scratch is not None:
            scratch.cleanup()
