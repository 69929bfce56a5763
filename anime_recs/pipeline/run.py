"""The pipeline: which steps exist, their order, and the parameters each gets from the config.

``main.py`` is a thin Hydra entry point around :func:`run_pipeline`.

Within one pipeline run the steps never hand files to each other through
``name:latest``: after each step, the exact versions it published (its ``output.<name>``
tags) replace ``name:latest`` in the parameters of the later steps, and each later
step's recorded inputs (``input.<name>`` parameters) are checked against them. So two
pipelines sharing one store never consume each other's outputs.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anime_recs.store.artifacts import ROOT_ENV, RUNS_DIR, default_root
from anime_recs.core.config import str_to_list
from anime_recs.core.options import STEP_OPTIONS, STEPS, check_model_overrides, step_values, validate_config
from anime_recs.data.download import MAL_API, source_kind
from anime_recs.data.mal import source as mal_source
from anime_recs.data.upstream import resolve_dir_sources
from anime_recs.core.errors import AlreadyReported, UserInputError
from anime_recs.core.lifeline import PIPELINE_ENV, pipeline_alive, pipeline_token
from anime_recs.pipeline.backends import BACKEND_ENV, check_tracking_server, require_wandb_online, resolve_backend_name
from anime_recs.pipeline.environments import building_environment, check_env_manager
from anime_recs.pipeline.tracking import (PARENT_RUN_ENV, VERBOSE_ENV, WANDB_MODE_ENV, ensure_tracking_store, quiet_third_parties,
                                          resolve_wandb_mode, default_tracking_store, choose_pipeline_experiment, wandb_mode_line,
                                          mark_killed, mark_ml_experiment, ERROR_TAG)

logger = logging.getLogger(__name__)

Config = Mapping[str, Any]


def _abs(path: str, base: Path) -> str:
    """Absolute form of a local path relative to ``base`` (steps run in their own folder)."""
    if not path:
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (base / candidate).resolve())


def _source(value: str, base: Path) -> str:
    if source_kind(value) == "file" and not str(value).startswith("file:"):
        return _abs(value, base)
    if source_kind(value) == MAL_API:
        return mal_source.absolute(value, base)
    return str(value)


def step_params(step: str, cfg: Config, base: Path, workdir: Path) -> dict[str, Any]:
    """The parameters of one step, from the options declared in :mod:`anime_recs.core.options`.

    Local paths and sources are made absolute against ``base`` (steps run in their own folder), lists travel as
    ``"a,b"`` and the model groups as one JSON file in ``workdir``.
    """
    params: dict[str, Any] = {}
    for option, value in zip(STEP_OPTIONS[step], step_values(step, cfg).values()):
        if option.kind == "path":
            value = _abs(value, base)
        elif option.kind == "source":
            value = _source(value, base)
        elif option.kind == "list":
            value = _csv(value)
        elif option.kind == "model_config":
            value = _model_config_file(cfg, workdir)
        params[option.name] = value
    return params


def _model_config_file(cfg: Config, workdir: Path) -> str:
    """The ``model`` and ``nn_arts`` groups as one JSON file (shared by neural_network and evaluate)."""
    config_file = workdir / "model_config.json"
    config_file.write_text(json.dumps({**cfg["model"], **cfg["nn_arts"]}, indent=2))
    return str(config_file)


def _csv(values: Any) -> str:
    return ",".join(str(v) for v in (values or []) if v is not None)


#: Keys whose comma-separated value is one list, never a sweep.
LIST_VALUED_KEYS = ("main.execute_steps",)
_SWEEP_FUNCTIONS = ("choice(", "range(", "interval(", "glob(", "tag(", "sort(", "shuffle(")


def split_overrides(argv: list[str]) -> list[str]:
    """Split arguments holding several overrides; keep values with spaces or commas whole.

    MLflow passes ``-P hydra_options="a=1 b='x y'"`` as one argument; Hydra wants one
    override per argument. Values are re-quoted for Hydra's grammar so that
    ``'Silent Mobius'`` stays one string and ``'download,preprocess'`` is not a sweep.
    Under ``-m`` / ``--multirun`` a comma list (``model.ranking.l2_per_count=40,80``) and
    Hydra's sweep functions (``choice(...)``, ``range(...)``) are sweeps and stay as
    they are, except for the list-valued ``main.execute_steps``.
    """
    try:
        tokens = [t for arg in argv for t in shlex.split(arg)]
    except ValueError as exc:
        raise UserInputError(f"cannot parse the overrides {' '.join(argv)!r} ({exc}); check the quotes") from None
    multirun = any(t in ("-m", "--multirun") for t in tokens)
    overrides = []
    for token in tokens:
        key, sep, value = token.partition("=")
        sweep = multirun and key.lstrip("+~") not in LIST_VALUED_KEYS and (
            (" " not in value and "," in value) or value.startswith(_SWEEP_FUNCTIONS))
        if sep and not sweep and any(c in value for c in " ,") and not value.startswith(("[", "{", "'", '"')):
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        overrides.append(f"{key}{sep}{value}")
    return overrides


def parse_steps(execute_steps: Any, steps: tuple[str, ...] = STEPS) -> list[str]:
    """Validate ``main.execute_steps`` and return it in pipeline order.

    Raises:
        UserInputError: an unknown step name (before anything runs).
    """
    wanted = str_to_list(execute_steps) if isinstance(execute_steps, str) else [str(s).strip() for s in execute_steps]
    if not wanted:
        raise UserInputError(f"main.execute_steps is empty; choose from: {', '.join(steps)}")
    unknown = [s for s in wanted if s not in steps]
    if unknown:
        raise UserInputError(f"unknown step(s) {', '.join(map(repr, unknown))} in main.execute_steps; valid steps: {', '.join(steps)}")
    return [s for s in steps if s in wanted]


def step_uri(step: str, cfg: Config, project_dir: Path) -> tuple[str, str | None]:
    """Where a step's MLflow project lives: the local folder, or ``<git uri>#<step>`` and a version."""
    main = cfg["main"]
    if step == "download" and main.get("download_repository"):
        return str(main["download_repository"]), str(main["steps_version"])
    if main.get("steps_repository"):
        return f"{main['steps_repository']}#{step}", str(main["steps_version"])
    return str(project_dir / step), None


def configure_environment(cfg: Config, base: Path) -> None:
    """Export what every step process reads: W&B grouping and mode, the artifact backend and root, verbosity.

    With a remote backend (``mlflow``, ``wandb``) and neither ``main.artifact_root`` nor
    ``$ANIME_RECS_ARTIFACTS``, no local store is kept: each step stages and caches in a temporary one.

    Raises:
        UserInputError: an unknown backend, a W&B backend without W&B online, an unreachable tracking server.
    """
    main = cfg["main"]
    default_tracking_store(base)
    os.environ[VERBOSE_ENV] = "1" if main.get("verbose") else "0"
    quiet_third_parties()
    os.environ["WANDB_PROJECT"] = str(main["project_name"])
    os.environ["WANDB_RUN_GROUP"] = str(main["experiment_name"])
    os.environ[WANDB_MODE_ENV] = resolve_wandb_mode(str(main["wandb_mode"]))
    backend = resolve_backend_name(str(main.get("artifact_backend") or "local"))
    if backend == "wandb":
        require_wandb_online(os.environ[WANDB_MODE_ENV])
    check_tracking_server(_tracking_uri())
    os.environ[BACKEND_ENV] = backend
    if main.get("artifact_root"):
        os.environ[ROOT_ENV] = _abs(str(main["artifact_root"]), base)
    elif backend == "local":
        os.environ[ROOT_ENV] = str(default_root())
    # W&B's offline runs beside the store (or in runs/ where you ran), never in a step's temporary folder.
    os.environ.setdefault("WANDB_DIR", str(Path(os.environ[ROOT_ENV]).parent if os.environ.get(ROOT_ENV) else base / RUNS_DIR))
    print(wandb_mode_line(os.environ[WANDB_MODE_ENV], str(main["wandb_mode"])), flush=True)


def _tracking_uri() -> str:
    """``mlflow.get_tracking_uri()``, without importing MLflow when it could only return ``$MLFLOW_TRACKING_URI``.

    Only an imported MLflow can hold a URI set in this process; before that, MLflow returns the variable
    as it is. Importing MLflow costs ~1.5 s of CPU, which an unreachable server no longer waits for.
    """
    if "mlflow" not in sys.modules and os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    import mlflow

    return mlflow.get_tracking_uri()


#: Options of the ``model`` group that only the original network has: switched on for another family (in a config
#: file or a preset as well as on the command line) they would do nothing.
NETWORK_SWITCHES = ("TPU_init", "multi_worker")


def check_family_options(cfg: Config, overrides: list[str] | None = None) -> None:
    """Refuse an option the chosen family would silently ignore: a network-only switch turned on, or any network-only
    ``model.KEY`` set on the command line (``overrides``, Hydra's form ``model.epochs=3``).

    Raises:
        UserInputError: naming the option and the family that supports it.
    """
    model = cfg.get("model") or {}
    family = str(model.get("family"))
    switched_on = [key for key in NETWORK_SWITCHES if model.get(key)]
    overridden = [key.lstrip("+~").removeprefix("model.") for key, sep, _ in (o.partition("=") for o in overrides or [])
                  if sep and key.lstrip("+~").startswith("model.")]
    check_model_overrides(family, [*switched_on, *overridden])


def run_pipeline(cfg: Config, project_dir: Path, base: Path, overrides: list[str] | None = None) -> list[str]:
    """Run the chosen steps through ``mlflow.run`` under one parent run; return the child run ids.

    Args:
        cfg: the resolved Hydra config.
        project_dir: the folder holding the step folders.
        base: where the user ran (relative paths are resolved against it).
        overrides: the command-line overrides of this job, logged on the parent run with the resolved config.
    """
    steps = parse_steps(cfg["main"]["execute_steps"])
    cfg = {**cfg, "data": resolve_dir_sources(dict(cfg["data"]), base)}  # `data=files`: the upstream files in data.dir
    validate_config(cfg)
    check_family_options(cfg, overrides)
    env_manager = str(cfg["main"]["env_manager"])
    check_env_manager(env_manager, [project_dir / step / "conda.yml" for step in steps])
    configure_environment(cfg, base)
    stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="anime_recs_pipeline_") as workdir:
        # Build every step's parameters first: config errors surface before anything runs.
        params = {step: step_params(step, cfg, base, Path(workdir)) for step in steps}
        return _run_steps(cfg, steps, params, project_dir, env_manager, overrides or [])


def pin_inputs(params: Mapping[str, Any], produced: Mapping[str, str]) -> dict[str, Any]:
    """Replace every ``name:latest`` parameter by the exact ``name:vN`` this pipeline run produced.

    Args:
        params: a step's parameters.
        produced: artifact name -> ``name:vN`` published by the earlier steps of this run.

    Returns:
        The parameters, pinned; references to artifacts this run did not produce stay as given.
    """
    pinned = dict(params)
    for key, value in params.items():
        if isinstance(value, str):
            name, sep, version = value.rpartition(":")
            if sep and version == "latest" and name in produced:
                pinned[key] = produced[name]
    return pinned


def check_inputs(step: str, used: Mapping[str, str], pinned: Mapping[str, str]) -> None:
    """Check that a step consumed the versions the pipeline pinned for it.

    Args:
        step: the step's name (for the message).
        used: artifact name -> ``name:vN`` the step recorded (its ``input.<name>`` parameters).
        pinned: artifact name -> ``name:vN`` the pipeline passed to it.

    Raises:
        UserInputError: the step used another version than the one this run produced.
    """
    wrong = [f"{used[name]} instead of {ref}" for name, ref in pinned.items() if name in used and used[name] != ref]
    if wrong:
        raise UserInputError(f"step {step} consumed {', '.join(wrong)} produced by this pipeline run; its outputs are not "
                             "trustworthy: check that the step passes its input parameters to use_artifact")


def _run_record(client: Any, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """A finished step run's outputs (``output.<name>`` tags) and inputs (``input.<name>`` params)."""
    data = client.get_run(run_id).data
    outputs = {k.removeprefix("output."): v for k, v in data.tags.items() if k.startswith("output.")}
    inputs = {k.removeprefix("input."): v for k, v in data.params.items() if k.startswith("input.")}
    return outputs, inputs


def _log_config(cfg: Config, overrides: list[str]) -> None:
    """Record the resolved config and the overrides on the active (parent) run, as the MLflow UI shows them."""
    import mlflow

    mlflow.log_dict(dict(cfg), "config/resolved_config.yaml")
    mlflow.log_dict({"overrides": list(overrides)}, "config/overrides.yaml")
    mlflow.set_tag("anime_recs.overrides", " ".join(overrides)[:5000])
    params = {"model.family": cfg.get("model", {}).get("family", ""), "main.artifact_backend": os.environ.get(BACKEND_ENV, "local")}
    params.update(override_params(overrides))  # each swept or overridden key: comparable in the runs table
    mlflow.log_params(params)


def override_params(overrides: list[str]) -> dict[str, str]:
    """``key -> value`` of Hydra command-line overrides (``model.l2=1``, ``+a.b=2``, ``model=original``), values cut."""
    params = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~").strip()
        if sep and key:
            params[key[:250]] = value.strip().strip("'\"")[:500]
    return params


#: Metrics of a step run shown on the pipeline's run too (the headline numbers of a sweep's runs table).
HEADLINE_METRICS = ("ours.", "gate.")


def headline_metrics(metrics: Mapping[str, float], step: str) -> dict[str, float]:
    """The metrics of a finished step that the pipeline's run carries: ``ours.*`` / ``gate.*`` and its duration."""
    picked = {key: value for key, value in metrics.items() if key.startswith(HEADLINE_METRICS)}
    if "step_seconds" in metrics:
        picked[f"{step}.seconds"] = metrics["step_seconds"]
    return picked


#: Run tag: the token (:func:`anime_recs.core.lifeline.pipeline_token`) of the pipeline a run belongs to.
PIPELINE_TAG = "anime_recs.pipeline"


def close_runs_of_stopped_pipelines(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED the runs still RUNNING whose pipeline process is gone (killed before it could say so).

    Returns:
        The run ids marked.
    """
    stale = [run.info.run_id for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
             if run.data.tags.get(PIPELINE_TAG) and not pipeline_alive(run.data.tags[PIPELINE_TAG])]
    mark_killed(stale)
    if stale:
        logger.info("marked %d run(s) of stopped pipelines as KILLED: %s", len(stale), ", ".join(stale))
    return stale


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt in the main thread, so ``kill`` stops the running step like Ctrl-C does."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _run_steps(cfg: Config, steps: list[str], params: dict[str, dict[str, Any]], project_dir: Path, env_manager: str,
               overrides: list[str]) -> list[str]:
    """Submit each step with ``mlflow.run`` under one parent run, pinning what earlier steps produced."""
    import mlflow
    from mlflow.tracking import MlflowClient

    ensure_tracking_store()
    experiment = str(cfg["main"]["experiment_name"])
    launcher_run = choose_pipeline_experiment(experiment)  # one experiment, whether `mlflow run .` or `python main.py`
    child_runs = []
    produced: dict[str, str] = {}
    client = MlflowClient()
    os.environ[PIPELINE_ENV] = token = pipeline_token()  # each step watches this process (anime_recs.core.lifeline)
    with mlflow.start_run(run_name="pipeline") as parent:
        close_runs_of_stopped_pipelines(client, parent.info.experiment_id)
        mark_ml_experiment(parent.info.experiment_id)  # whatever the entry point (mlflow run . or python main.py)
        os.environ[PARENT_RUN_ENV] = parent.info.run_id
        mlflow.set_tags({"anime_recs.pipeline.steps": ",".join(steps), PIPELINE_TAG: token})
        if launcher_run:
            client.set_tag(launcher_run, "anime_recs.pipeline_run", parent.info.run_id)
            client.set_tag(launcher_run, "mlflow.note.content", f"This `mlflow run` ran the pipeline as run {parent.info.run_id} "
                           f"in experiment '{experiment}' (main.experiment_name).")
        _log_config(cfg, overrides)
        where = os.environ.get(ROOT_ENV) or f"the MLflow tracking server {mlflow.get_tracking_uri()}"
        if os.environ[BACKEND_ENV] == "wandb":
            where = f"W&B project {os.environ['WANDB_PROJECT']}"
        print(f"pipeline run {parent.info.run_id}: steps {', '.join(steps)}; artifacts in {where}", flush=True)
        for step in steps:
            uri, version = step_uri(step, cfg, project_dir)
            step_params = pin_inputs(params[step], produced)
            pinned = {ref.rpartition(":")[0]: ref for key, ref in step_params.items() if ref != params[step][key]}
            print(f"\n=== step {step} ===" + (f" (inputs from this run: {', '.join(pinned.values())})" if pinned else ""), flush=True)
            with building_environment(step, env_manager):
                submitted = mlflow.run(
                    uri,
                    entry_point="main",
                    version=version,
                    parameters=step_params,
                    env_manager=env_manager,
                    experiment_id=parent.info.experiment_id,
                    run_name=step,
                    synchronous=False,
                )
            # Tag at once so the UI nests the step while it runs, whatever the step code does.
            client.set_tag(submitted.run_id, "mlflow.parentRunId", parent.info.run_id)
            client.set_tag(submitted.run_id, PIPELINE_TAG, token)
            child_runs.append(submitted.run_id)
            try:
                finished = submitted.wait()
            except BaseException:  # Ctrl-C, or SIGTERM (see stop_on_sigterm): the step stops with the pipeline
                submitted.cancel()
                mark_killed([submitted.run_id])
                raise
            if not finished:
                reported = client.get_run(submitted.run_id).data.tags.get(ERROR_TAG)
                if reported:  # the step said what was wrong, in one line, above
                    raise AlreadyReported(f"{step}: {reported}")
                raise UserInputError(f"step {step} failed (MLflow run {submitted.run_id}); see its error above")
            outputs, inputs = _run_record(client, submitted.run_id)
            headline = headline_metrics(client.get_run(submitted.run_id).data.metrics, step)
            if headline:
                mlflow.log_metrics(headline)
            check_inputs(step, inputs, pinned)
            produced.update(outputs)
            for name, ref in outputs.items():
                client.set_tag(parent.info.run_id, f"output.{name}"[:250], ref)
    return child_runs
