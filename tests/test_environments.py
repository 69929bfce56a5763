"""Per-step environments (``main.env_manager``): the checks before a run, the generated env files, and a real uv run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.pipeline.environments import building_environment, check_env_manager, python_version
from anime_recs.core.errors import UserInputError
from tests.conftest import REPO, child_env
from tests.test_pipeline import git_daemon_tag, runs_table

#: Where the slow test keeps its step environments, so CI reruns reuse them (override with the variable).
TEST_ENV_ROOT = Path(os.environ.get("ANIME_RECS_TEST_ENV_ROOT", Path.home() / ".cache" / "anime_recs" / "mlflow-envs"))


def pip_requirements(step: str) -> list[str]:
    spec = yaml.safe_load((REPO / step / "conda.yml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    return [line.split("==")[0] for line in pip]


def test_data_steps_envs_hold_what_they_import_and_no_tensorflow() -> None:
    # psutil: every step watches the pipeline that started it (anime_recs.core.lifeline).
    data_step = ["mlflow", "numpy", "pandas", "protobuf", "psutil", "pyarrow", "tqdm", "wandb"]
    assert pip_requirements("download") == pip_requirements("preprocess") == data_step
    assert "tensorflow-cpu" in pip_requirements("neural_network") and "keras" in pip_requirements("neural_network")
    # Regression: under uv, neural_network failed in mlflow.start_run: MLflow's system metrics need psutil, no import of ours does.
    assert "psutil" in pip_requirements("neural_network") and "psutil" in pip_requirements("evaluate")
    # The package comes from the checkout (PYTHONPATH), never installed: a cached env must not pin an old copy of it.
    for step in ("download", "neural_network"):
        assert not any(".." in r or r.startswith("-e") for r in pip_requirements(step))
        assert 'command: "PYTHONPATH=..:$PYTHONPATH python' in (REPO / step / "MLproject").read_text()
    assert python_version(REPO / "download" / "conda.yml") == "3.11"


def test_unknown_manager_is_refused() -> None:
    with pytest.raises(UserInputError, match="unknown main.env_manager 'pip'; choose from: local, conda, virtualenv, uv"):
        check_env_manager("pip", [])


def test_uv_missing_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(UserInputError, match=r"needs the uv executable.*pip install -r requirements.txt.*main.env_manager=local"):
        check_env_manager("uv", [])


def test_uv_beside_python_is_put_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `.venv/bin/python main.py` without an activated venv: MLflow calls `uv` by name.
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        pytest.skip("uv is not installed beside this Python")
    monkeypatch.setenv("PATH", str(tmp_path))
    check_env_manager("uv", [])
    assert os.environ["PATH"].split(os.pathsep)[0] == str(uv.parent)


def test_missing_python_version_is_one_line_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (Path(sys.executable).parent / "uv").is_file():
        pytest.skip("uv is not installed beside this Python")
    env_file = tmp_path / "conda.yml"
    env_file.write_text((REPO / "download" / "conda.yml").read_text().replace("python=3.11", "python=3.4"))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    with pytest.raises(UserInputError, match=r"need Python 3.4 and uv finds none installed; install it once with `uv python install 3.4`"):
        check_env_manager("uv", [env_file])


def test_virtualenv_and_conda_without_their_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("MLFLOW_CONDA_HOME", raising=False)
    with pytest.raises(UserInputError, match="needs pyenv"):
        check_env_manager("virtualenv", [])
    with pytest.raises(UserInputError, match="needs conda and none is on PATH; use main.env_manager=uv"):
        check_env_manager("conda", [])
    check_env_manager("local", [])


def test_failed_build_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.utils.process import ShellCommandException

    monkeypatch.setenv("MLFLOW_ENV_ROOT", str(tmp_path))
    with pytest.raises(UserInputError) as raised, building_environment("download", "uv"):
        raise ShellCommandException("Non-zero exit code: 2\nCommand: ['uv', 'pip', 'install']\n\nSTDERR:\nno network")
    message = str(raised.value)
    assert "\n" not in message and "step download: building its uv environment" in message and "Non-zero exit code: 2" in message
    assert "check network access to PyPI and download/conda.yml" in message


def _run_uv_pipeline(work: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, float]:
    env = child_env(MLFLOW_ENV_ROOT=str(TEST_ENV_ROOT), ANIME_RECS_WANDB_MODE="offline", WANDB_DIR=str(work))
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        env.pop(key, None)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "main.execute_steps=download,preprocess", "main.env_manager=uv",
                             "data.sample_users=300", "data.sample_anime=150", "data.num_reviews=10", *overrides],
                            cwd=work, env=env, capture_output=True, text=True, timeout=1200, check=False)
    return result, time.perf_counter() - started


@pytest.mark.slow  # the first run ever builds two environments from PyPI (~2 min here); later runs reuse them
def test_download_preprocess_run_in_their_own_cached_uv_environments(tmp_path: Path) -> None:
    first, first_seconds = _run_uv_pipeline(tmp_path / "first")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    runs = runs_table(tmp_path / "first" / "runs" / "mlflow.db")  # main.py's default: runs/ where it runs
    prefixes = {}
    for step in ("download", "preprocess"):
        tags = runs[step]
        assert tags["mlflow.project.env"] == "uv"
        prefix = Path(tags["anime_recs.environment"])
        # Really another interpreter: a virtualenv under the env root, not this test's environment.
        assert prefix.parent == TEST_ENV_ROOT and prefix.name.startswith("mlflow-") and prefix != Path(sys.prefix)
        assert Path(tags["anime_recs.python"]).parent == prefix / "bin"
        assert tags["anime_recs.library"] == str(REPO / "anime_recs")  # from the checkout, through PYTHONPATH
        site = next(prefix.glob("lib/python3*/site-packages"))
        assert (site / "pandas").is_dir() and not (site / "tensorflow").exists() and not (site / "anime_recs").exists()
        prefixes[step] = prefix
    # One environment per distinct requirement list: steps that need the same packages share it.
    same_needs = pip_requirements("download") == pip_requirements("preprocess")
    assert (prefixes["download"] == prefixes["preprocess"]) == same_needs
    built = {step: prefix.stat().st_ino for step, prefix in prefixes.items()}
    store = ArtifactStore(tmp_path / "first" / "runs" / "artifacts")
    assert store.get("user_stats.parquet:latest").version == 0
    assert store.get("preprocessed_stats.parquet:latest").version == 0

    # The second run takes the steps from a git tag (MLflow checks them out to a temporary folder).
    with git_daemon_tag(tmp_path) as url:
        second, second_seconds = _run_uv_pipeline(tmp_path / "second", f"main.steps_repository={url}", "main.steps_version=v-test")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    second_runs = runs_table(tmp_path / "second" / "runs" / "mlflow.db")
    # Cached: each step ran in the same environment folder as before (same inode: not rebuilt) ...
    assert {s: Path(second_runs[s]["anime_recs.environment"]) for s in prefixes} == prefixes
    assert {step: prefix.stat().st_ino for step, prefix in prefixes.items()} == built
    for step in prefixes:
        library = Path(second_runs[step]["anime_recs.library"])
        # ... yet with the tag's own anime_recs, not this working copy's: the environment does not pin the code.
        assert library.name == "anime_recs" and not library.is_relative_to(REPO)
    print(f"uv pipeline download,preprocess: first run {first_seconds:.1f} s, second run (from a git tag) {second_seconds:.1f} s")
