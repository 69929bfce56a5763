"""The pipeline through real `mlflow run`: step selection, nesting, single steps, git URIs, bad input."""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.core.errors import UserInputError
from anime_recs.pipeline.run import STEPS, parse_steps
from tests.conftest import REPO, child_env, step_module

SMALL = "data.sample_users=200 data.sample_anime=120 data.sample_mean_items=30 data.num_reviews=5"


def mlflow_run(uri: str, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`mlflow run` in ``cwd`` (so mlflow.db and artifacts/ land there)."""
    env = child_env()
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "mlflow", "run", uri, "--env-manager", "local", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def step_script(script: str, *args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, Path(script).name, *args], cwd=REPO / Path(script).parent, env=env,
                          capture_output=True, text=True, timeout=timeout)


def runs_table(db: Path) -> dict[str, dict[str, str]]:
    """run name -> tags of every run in an MLflow sqlite store."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select run_uuid, key, value from tags").fetchall()
    finally:
        con.close()
    tags: dict[str, dict[str, str]] = {}
    for run, key, value in rows:
        tags.setdefault(run, {})[key] = value
    return {t.get("mlflow.runName", run): {**t, "run_id": run} for run, t in tags.items()}


def test_overrides_become_parameters_of_the_pipeline_run() -> None:
    from anime_recs.pipeline.run import headline_metrics, override_params

    assert override_params(["model=original", "model.epochs=3", "+data.extra='a b'", "~main.verbose", "x"]) == {
        "model": "original", "model.epochs": "3", "data.extra": "a b"}
    assert headline_metrics({"ours.nDCG_at_10": 0.3, "GlobalMean.RMSE": 1.7, "step_seconds": 4.0}, "evaluate") == {
        "ours.nDCG_at_10": 0.3, "evaluate.seconds": 4.0}


def test_parse_steps_orders_and_rejects_unknown_names() -> None:
    assert parse_steps("preprocess,download") == ["download", "preprocess"]
    assert parse_steps(["download"]) == ["download"]
    with pytest.raises(UserInputError, match="unknown step\\(s\\) 'dowload'.*valid steps: download, preprocess, neural_network"):
        parse_steps("dowload,preprocess")
    assert list(STEPS)[:2] == ["download", "preprocess"]


@pytest.mark.slow
def test_pipeline_runs_steps_nested_and_single_steps(tmp_path: Path) -> None:
    only_download = mlflow_run(str(REPO), tmp_path, "-P", f"hydra_options=main.execute_steps='download' {SMALL}")
    assert only_download.returncode == 0, only_download.stderr[-3000:]
    store = ArtifactStore(tmp_path / "artifacts")
    assert store.names() == ["all_anime.csv", "synopses.csv", "user_stats.parquet"]

    both = mlflow_run(str(REPO), tmp_path, "-P", f"hydra_options=main.execute_steps='download,preprocess' {SMALL}")
    assert both.returncode == 0, both.stderr[-3000:]
    assert [v.ref for v in store.versions("user_stats.parquet")] == ["user_stats.parquet:v0", "user_stats.parquet:v1"]
    clean = store.get("preprocessed_stats.parquet:v0", "preprocessed_data")
    assert clean.metadata["scaling"] == {"rating_min": 1.0, "rating_max": 10.0}

    runs = runs_table(tmp_path / "mlflow.db")
    pipelines = [r for r in runs.values() if r.get("anime_recs.pipeline.steps") == "download,preprocess"]
    assert len(pipelines) == 1
    children = [r for r in runs.values() if r.get("mlflow.parentRunId") == pipelines[0]["run_id"]]
    assert sorted(r["mlflow.runName"] for r in children) == ["download", "preprocess"]
    con = sqlite3.connect(tmp_path / "mlflow.db")
    params = dict(con.execute("select key, value from params where run_uuid=?",
                              (next(r["run_id"] for r in children if r["mlflow.runName"] == "preprocess"),)).fetchall())
    con.close()
    assert params["input.user_stats.parquet"] == "user_stats.parquet:v1"  # the exact version consumed
    # One experiment whatever the entry point: `mlflow run .` too puts the pipeline in main.experiment_name, and the
    # run MLflow started in "Default" points to it.
    con = sqlite3.connect(tmp_path / "mlflow.db")
    experiment = con.execute("select e.name from runs r join experiments e on r.experiment_id = e.experiment_id "
                             "where r.run_uuid = ?", (pipelines[0]["run_id"],)).fetchone()[0]
    con.close()
    assert experiment == "development"
    assert [r["anime_recs.pipeline_run"] for r in runs.values() if "anime_recs.pipeline_run" in r].count(pipelines[0]["run_id"]) == 1

    alone = mlflow_run(str(REPO / "preprocess"), tmp_path, "-P", "num_reviews=3", "-P", "drop_plan=true")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert store.get("preprocessed_stats.parquet:latest").metadata["options"]["num_reviews"] == 3

    unknown = mlflow_run(str(REPO), tmp_path, "-P", "hydra_options=main.execute_steps='download,trian'")
    assert unknown.returncode != 0
    assert "unknown step(s) 'trian'" in unknown.stderr and "valid steps: download, preprocess, neural_network" in unknown.stderr
    assert len(store.versions("user_stats.parquet")) == 2  # nothing ran


def test_mlproject_files_match_step_options() -> None:
    # Regression: MLproject parameters drifting from the scripts' argparse options.
    out = subprocess.run([sys.executable, "scripts/gen_mlproject.py", "--check"], cwd=REPO, capture_output=True, text=True, env=child_env())
    assert out.returncode == 0, out.stderr


def test_step_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    pairs = (("download", "--stats_url"), ("preprocess", "--drop_half_watched"), ("neural_network", "--overrides"),
             ("evaluate", "--relevant_threshold"), ("similar_anime", "--anime_query"), ("similar_users", "--TV_only"),
             ("user_prefs", "--favorite_percentile"), ("user_recs", "--recs_n_sim_ID"), ("model_recs", "--min_score"))
    for step, option in pairs:
        with pytest.raises(SystemExit) as ended:
            step_module(step).parse_args(["--help"])
        out = capsys.readouterr().out
        assert ended.value.code == 0 and option in out and "default" in out, step


@pytest.fixture()
def step_env(tmp_path: Path) -> dict[str, str]:
    env = child_env(ANIME_RECS_ARTIFACTS=str(tmp_path / "artifacts"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                    ANIME_RECS_WANDB_MODE="offline", WANDB_DIR=str(tmp_path))
    env.pop("MLFLOW_RUN_ID", None)
    return env


def assert_one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and text in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # the same inputs run in-process in tests/test_reliability.py
def test_bad_inputs_end_with_one_line_and_publish_nothing(tmp_path: Path, step_env: dict[str, str]) -> None:
    small = ["--sample_users", "80", "--sample_anime", "60", "--sample_mean_items", "20"]
    assert_one_line_error(step_script("download/download.py", "--stats_url", str(tmp_path / "missing.parquet"), *small, env=step_env),
                          "does not exist")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert_one_line_error(step_script("download/download.py", "--all_anime_url", f"http://127.0.0.1:{port}/a.csv", *small, env=step_env),
                          "cannot reach")
    from anime_recs.data.sample import make_sample

    sample = make_sample(80, 60, 20, seed=1)
    sample.stats.drop(columns="rating").to_csv(tmp_path / "norating.csv", index=False)
    assert_one_line_error(step_script("download/download.py", "--stats_url", str(tmp_path / "norating.csv"), *small, env=step_env),
                          "lacks column(s) rating")
    sample.stats.to_parquet(tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert_one_line_error(step_script("download/download.py", "--stats_url", str(tmp_path / "cut.parquet"), *small, env=step_env),
                          "truncated")
    store = ArtifactStore(tmp_path / "artifacts")
    assert store.names() == []  # no bad input created a version

    assert step_script("download/download.py", *small, env=step_env).returncode == 0
    assert_one_line_error(step_script("preprocess/preprocess.py", "--raw_stats", "user_stats.parquet:v9", env=step_env),
                          "has no version 'v9'; it has: v0, latest")
    cli = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "artifacts", "path", "nothing:v0"], env=step_env,
                         capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.startswith("error: no artifact named 'nothing'")
    assert store.names() == ["all_anime.csv", "synopses.csv", "user_stats.parquet"]
    assert "preprocessed_stats.parquet" not in store.names()


@pytest.mark.slow
def test_kill_9_during_download_then_rerun(tmp_path: Path, step_env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, "download.py", "--sample_users", "40000", "--sample_anime", "900"],
                            cwd=REPO / "download", env=step_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    assert proc.stdout is not None
    for line in proc.stdout:  # kill in the middle: after the first file validated, before publishing
        if "validated stats" in line or time.time() > deadline:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)
    assert proc.returncode == -9
    store = ArtifactStore(tmp_path / "artifacts")
    for name in store.names():
        for version in store.versions(name):
            store.get(version.ref)  # whatever is visible is complete and verified
    assert not [p for p in (tmp_path / "artifacts").glob("*/v*") if not (p / "manifest.json").exists()]
    rerun = step_script("download/download.py", "--sample_users", "80", "--sample_anime", "60", env=step_env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert store.get("user_stats.parquet:latest").metadata["n_users"] == 80


@contextmanager
def git_daemon_tag(tmp_path: Path) -> Iterator[str]:
    """This repository's HEAD served by ``git daemon`` on loopback with tag ``v-test``; yields its ``git://`` URL."""
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("needs git and a committed repository")
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(served / "anime.git")], check=True)
    subprocess.run(["git", "-C", str(served / "anime.git"), "tag", "v-test", "HEAD"], check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={served}", "--listen=127.0.0.1",
                               f"--port={port}", "--reuseaddr", str(served)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"git://127.0.0.1:{port}/anime.git"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)


@pytest.mark.slow
def test_mlflow_run_from_git_daemon_tag(tmp_path: Path) -> None:
    with git_daemon_tag(tmp_path) as url:
        work = tmp_path / "work"
        work.mkdir()
        result = mlflow_run(url, work, "-v", "v-test", "-P", f"hydra_options=main.execute_steps='download' {SMALL}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "user_stats.parquet" in ArtifactStore(work / "artifacts").names()


def test_split_overrides_keeps_quoted_values_whole() -> None:
    from anime_recs.pipeline.run import split_overrides

    argv = ["main.execute_steps='download,preprocess' similarity.anime_query='Silent Mobius' data.num_reviews=5", "x=[a,b]"]
    assert split_overrides(argv) == ["main.execute_steps='download,preprocess'", "similarity.anime_query='Silent Mobius'",
                                     "data.num_reviews=5", "x=[a,b]"]
    assert split_overrides([""]) == []
    with pytest.raises(UserInputError, match="check the quotes"):
        split_overrides(["a='unclosed"])


def test_split_overrides_leaves_multirun_sweeps_to_hydra() -> None:
    # Regression: `python main.py -m model.embedding_size=32,64` used to become one job with the string '32,64'.
    from anime_recs.pipeline.run import split_overrides

    argv = ["-m", "model.ranking.l2_per_count=40,80", "main.execute_steps=download,preprocess", "model.rating.k=choice(20,40)"]
    assert split_overrides(argv) == ["-m", "model.ranking.l2_per_count=40,80", "main.execute_steps='download,preprocess'",
                                     "model.rating.k=choice(20,40)"]


def test_with_no_tracking_uri_everything_goes_to_runs_below_where_you_run(tmp_path: Path) -> None:
    # Regression: mlflow.db, mlruns/ and artifacts/ landed in the checkout's root; now one git-ignored runs/ holds them.
    code = ("import mlflow; from pathlib import Path; from anime_recs.pipeline.tracking import default_tracking_store, "
            "ensure_tracking_store, use_experiment; from anime_recs.store.artifacts import default_root; "
            "default_tracking_store(Path.cwd()); ensure_tracking_store(); use_experiment('development'); "
            "print(mlflow.get_experiment_by_name('development').artifact_location); print(default_root())")
    env = child_env()
    for key in ("MLFLOW_TRACKING_URI", "ANIME_RECS_ARTIFACTS"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    location, root = out.stdout.strip().splitlines()[-2:]
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    assert location == (tmp_path / "runs" / "mlruns").as_uri() and Path(root) == tmp_path / "runs" / "artifacts"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing else beside it
