"""Reliability regressions (issue 13): every hostile input or fault tried, one test each.

Each test names the defect it guards against. The fast ones run the real step entry
points in-process; the concurrency and kill -9 cases run real processes.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anime_recs.store.artifacts import MANIFEST, ArtifactStore
from anime_recs.core.config import optional_int
from anime_recs.core.options import validate_config
from anime_recs.data.download import fetch
from anime_recs.core.errors import ArtifactError, UserInputError, one_line, plain
from anime_recs.pipeline.run import check_family_options, check_inputs, pin_inputs
from anime_recs.data.preprocess import PreprocessOptions, preprocess
from anime_recs.data.sample import make_sample
from tests.conftest import REPO, child_env, serving, step_module

STATS_HEADER = "user_id,anime_id,rating,watching_status,watched_episodes\n"
SMALL = ["--sample_users", "50", "--sample_anime", "40", "--sample_mean_items", "10"]


DOWNLOAD = step_module("download")


@pytest.fixture()
def store(tmp_path: Path, tracking_db: str, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    """An empty artifact store for one test; steps run in-process write to it."""
    monkeypatch.setenv("ANIME_RECS_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_db)
    monkeypatch.setenv("ANIME_RECS_WANDB_MODE", "disabled")
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return ArtifactStore(tmp_path / "artifacts")


def download_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the download step in-process; assert it ended with one line and exit 2; return that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        DOWNLOAD.main([*SMALL, *argv])
    err = capsys.readouterr().err
    assert ended.value.code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def assert_names_source(line: str, source: str) -> None:
    # Regression: errors named the step's temporary copy (<tmp>/stats_download.csv), not the user's file.
    assert source in line and "stats_download" not in line and "anime_recs_download_" not in line, line
    assert "np." not in line  # regression: values printed as np.int8(11)


# ---------------------------------------------------------------- stats files that do not parse
def _write(path: Path, data: bytes | str) -> Path:
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)  # type: ignore[operator]
    return path


BAD_STATS = {
    # Regression: each of these ended in a pyarrow/pandas traceback instead of one line.
    "binary": (os.urandom(4000).replace(b"\x1f\x8b", b"xx").replace(b"PK", b"xx") + b"\x00", "binary data"),
    "gzip_named_csv": (gzip.compress((STATS_HEADER + "1,2,3,2,4\n").encode()), "gzip-compressed"),
    "rating_abc": (STATS_HEADER + "1,2,3,2,4\n1,3,abc,2,4\n", "column rating holds 'abc'"),
    "rating_fraction": (STATS_HEADER + "1,2,3,2,4\n1,3,7.5,2,4\n", "column rating holds '7.5'"),
    "user_id_1e23": (STATS_HEADER + "1,2,3,2,4\n1e23,3,7,2,4\n", "column user_id holds '1e23'"),
    "latin1_bytes": ((STATS_HEADER.strip() + ",caf\xe9\n1,2,3,2,4,x\n").encode("latin-1"), "is not UTF-8"),
    "html_page": ("<!DOCTYPE html>\n<html><head><title>a, b</title></head>\n<body>hi</body></html>\n", "HTML"),
    "header_only": (STATS_HEADER, "has a header but no rows"),
    "rating_out_of_range": (STATS_HEADER + "1,2,11,2,4\n", "column rating must be 0..10 (0 = not rated); found 11 in 1 row(s)"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATS))
def test_unparseable_stats_file_is_one_line_naming_the_file(case: str, tmp_path: Path, store: ArtifactStore,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, expected = BAD_STATS[case]
    source = _write(tmp_path / f"{case}.csv", data)
    line = download_error(capsys, "--stats_url", str(source))
    assert expected in line, line
    assert_names_source(line, str(source))
    assert store.names() == []  # nothing published


def test_long_value_is_cut_in_the_message(tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: a 10,000-character value was echoed whole.
    source = _write(tmp_path / "long.csv", STATS_HEADER + f"1,2,{'x' * 10_000},2,4\n")
    line = download_error(capsys, "--stats_url", str(source))
    assert "column rating holds 'xxx" in line and "(10,002 characters)" in line and len(line) < 400, line[:500]


def test_bad_anime_and_synopses_files(tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]) -> None:
    sample = make_sample(50, 40, 10, seed=3)
    anime = sample.all_anime.copy()
    anime.loc[3, "Score"] = "great"  # regression: an unparseable Score silently became Unknown
    anime.to_csv(tmp_path / "anime.csv", index=False)
    line = download_error(capsys, "--all_anime_url", str(tmp_path / "anime.csv"))
    assert "column Score holds non-numeric values such as 'great' in 1 row(s)" in line
    assert_names_source(line, str(tmp_path / "anime.csv"))

    sample.synopses.head(0).to_csv(tmp_path / "synopses.csv", index=False)  # regression: 0-row synopses were published
    line = download_error(capsys, "--synopses_url", str(tmp_path / "synopses.csv"))
    assert "has a header but no rows" in line and str(tmp_path / "synopses.csv") in line

    latin = sample.all_anime.copy()
    latin.loc[0, "Name"] = "Café"
    (tmp_path / "latin.csv").write_bytes(latin.to_csv(index=False).encode("latin-1", errors="replace"))
    line = download_error(capsys, "--all_anime_url", str(tmp_path / "latin.csv"))
    assert "is not UTF-8 text" in line and "iconv" in line
    assert store.names() == []


@pytest.mark.parametrize("size", ["0", "-5"])
def test_sample_size_below_one_is_refused(size: str, store: ArtifactStore, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: data.sample_users=0 / -5 ended in a numpy traceback.
    line = download_error(capsys, "--sample_users", size)
    assert f"data.sample_users must be at least 1, got {size}" in line
    assert store.names() == []


# ---------------------------------------------------------------- downloads over http
class _Handler(http.server.BaseHTTPRequestHandler):
    """/html.csv: 200 with an HTML page; /trickle.csv: a CSV header, one byte every ``TRICKLE`` seconds."""

    # A byte every 50 ms never trips a per-read timeout (the deadlines below are 12-16 bytes long), so only
    # the overall deadline can end the download; the test waits ~1.5 s in all instead of ~4 s at a byte a second.
    TRICKLE = 0.05

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path.startswith("/html"):
            body = b"<!DOCTYPE html><html><body>Sign in to GitHub</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.end_headers()
        try:
            for byte in STATS_HEADER.encode() * 100:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.TRICKLE)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture()
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (threads, so a trickling response does not block the test)."""
    with serving(_Handler) as url:
        yield url


def test_http_url_answering_with_html_is_one_line(server: str, store: ArtifactStore, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: the HTML page was saved as the CSV and parsed outside the error handling.
    line = download_error(capsys, "--stats_url", f"{server}/html.csv")
    assert "answered with an HTML page" in line and f"{server}/html.csv" in line
    assert store.names() == []


def test_trickling_server_hits_the_overall_deadline(server: str, store: ArtifactStore, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: a server sending a byte a second kept the download going forever (only a per-read timeout).
    # Deadlines of 0.8 s and 0.6 s: each still 12+ trickled bytes long (see _Handler.TRICKLE).
    started = time.monotonic()
    with pytest.raises(UserInputError, match=r"did not finish within 0\.8 s") as info:
        fetch(f"{server}/trickle.csv", tmp_path / "out.csv", timeout=5, progress=False, deadline=0.8)
    assert time.monotonic() - started < 6 and "\n" not in str(info.value)
    assert not (tmp_path / "out.csv").exists()
    line = download_error(capsys, "--stats_url", f"{server}/trickle.csv", "--download_timeout", "0.6")
    assert "did not finish within 0.6 s" in line and "data.download_timeout" in line
    assert store.names() == []


# ---------------------------------------------------------------- manifests
@pytest.mark.parametrize("damage", ["{", "[]", json.dumps({"type": "raw_data"}),
                                    json.dumps({"type": "raw_data", "files": {"a.txt": {"size": 1}}})])
def test_damaged_or_incomplete_manifest_is_one_line_also_in_the_cli(damage: str, tmp_path: Path, anime_recs_cli) -> None:  # type: ignore[no-untyped-def]
    # Regression: a damaged manifest.json ended in a JSONDecodeError/KeyError traceback (also `artifacts list`).
    store = ArtifactStore(tmp_path / "store")
    source = _write(tmp_path / "a.txt", "a")
    artifact = store.log("a.txt", "raw_data", [source])
    manifest = artifact.path / MANIFEST
    manifest.chmod(0o644)
    manifest.write_text(damage)
    with pytest.raises(ArtifactError, match=r"artifact a.txt:v0 is damaged: .*manifest.json") as info:
        store.get("a.txt:latest")
    assert "\n" not in str(info.value)
    for action in (["list"], ["path", "a.txt:v0"]):
        cli = anime_recs_cli("--root", str(store.root), "artifacts", *action)
        assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr
        assert cli.stderr.count("\n") == 1 and "manifest.json" in cli.stderr
    if damage == "{":  # once through a real interpreter: the line is all it prints
        cli = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "--root", str(store.root), "artifacts", "list"],
                             capture_output=True, text=True, env=child_env(), timeout=60, check=False)
        assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "manifest.json" in cli.stderr, cli.stderr


def test_long_names_are_cut_in_every_error_line(tmp_path: Path) -> None:
    # Regression: a 10,000-character name was echoed whole.
    name = "n" * 10_000
    cli = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "--root", str(tmp_path), "artifacts", "path", name],
                         capture_output=True, text=True, env=child_env(), timeout=60)
    assert cli.returncode == 2 and len(cli.stderr) < 400 and "(10,002 characters)" in cli.stderr, cli.stderr[:500]
    message = one_line(f"no anime named '{name}'; closest matches: 'Rental Magica'")
    assert len(message) < 200 and message.endswith("closest matches: 'Rental Magica'")
    import numpy as np

    assert plain(np.int8(11)) == "11" and plain(np.float64(7.5)) == "7.5" and plain("abc") == "'abc'"


# ---------------------------------------------------------------- values checked before any work
@pytest.mark.parametrize(("override", "key"), [
    # Regressions: each was accepted silently (num_reviews -1 kept everyone, test_size 1.5 validated on one row).
    ({"data": {"num_reviews": -1}}, "data.num_reviews must be a whole number >= 0, got -1"),
    ({"model": {"test_size": 1.5}}, "model.test_size must be a fraction between 0 and 1"),
    ({"users": {"sim_user_query": 1167.5}}, "users.sim_user_query must be a whole number >= 0 or null, got 1167.5"),
    ({"model_recs": {"model_user_query": "abc"}}, "model_recs.model_user_query must be a whole number"),
    ({"data": {"sample_users": 0}}, "data.sample_users must be a whole number >= 1, got 0"),
    ({"data": {"download_timeout": 0}}, "data.download_timeout must be a number > 0"),
    ({"data": {"drop_plan": "yes please"}}, "data.drop_plan must be true or false"),
])
def test_config_schema_names_the_key(override: dict, key: str) -> None:
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_config(cfg)  # the defaults are valid
    for group, values in override.items():
        cfg[group].update(values)
    with pytest.raises(UserInputError, match="^" + key.replace("(", r"\(").replace(".", r"\.")):
        validate_config(cfg)


def test_pipeline_refuses_bad_values_before_anything_runs(tmp_path: Path) -> None:
    env = child_env(ANIME_RECS_ARTIFACTS=str(tmp_path / "artifacts"))
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "model.test_size=1.5"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: model.test_size must be")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "artifacts").exists()  # nothing started


def test_a_network_only_option_on_another_family_is_refused_in_one_line(tmp_path: Path) -> None:
    env = child_env(ANIME_RECS_ARTIFACTS=str(tmp_path / "artifacts"))
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "model.TPU_init=true"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: model.TPU_init applies only to the original network (model=original); the family 'hybrid' has no "
        "network and would ignore it: drop model.TPU_init or add model=original"]
    assert not (tmp_path / "artifacts").exists()  # nothing started
    check_family_options({"model": {"family": "original", "TPU_init": True}})  # the network takes it


def test_fractional_user_query_is_an_error_not_truncated(capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: --user_query 1167.5 was used as user 1167.
    assert optional_int("1167") == 1167 and optional_int("1167.0") == 1167 and optional_int("null") is None
    with pytest.raises(SystemExit) as ended:
        step_module("similar_users").parse_args(["--user_query", "1167.5"])
    assert ended.value.code == 2 and "expected a whole number or null, got '1167.5'" in capsys.readouterr().err


def test_preprocess_on_zero_rows_says_so() -> None:
    # Regression: 0 input rows were reported as "rule 'missing_values' removed every row".
    empty = make_sample(20, 20, 5).stats.head(0)
    with pytest.raises(UserInputError, match="have no rows, so there is nothing to preprocess"):
        preprocess(empty, PreprocessOptions(num_reviews=1))
    with pytest.raises(UserInputError, match="num_reviews must be >= 0"):
        preprocess(make_sample(20, 20, 5).stats, PreprocessOptions(num_reviews=-1))


# ---------------------------------------------------------------- transactions (one step run = all or nothing)
def test_transaction_outputs_appear_together_or_never(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    a, b = _write(tmp_path / "a.txt", "a"), _write(tmp_path / "b.txt", "b")
    txn = store.begin()
    staged = store.log("a.txt", "raw_data", [a], txn=txn)
    assert staged.file().read_text() == "a"  # the step can read what it staged
    store.log("b.txt", "raw_data", [b], txn=txn)
    assert store.names() == []  # nothing visible before the commit
    txn.commit()
    assert store.names() == ["a.txt", "b.txt"]
    with pytest.raises(RuntimeError), store.transaction() as failing:
        store.log("a.txt", "raw_data", [a], txn=failing)
        raise RuntimeError("step failed after its first publish")
    assert store.get("a.txt:latest").version == 0  # latest never points into the failed step run
    assert store.log("a.txt", "raw_data", [a]).version == 2  # the failed run's number is not reused


def test_latest_is_the_last_committed_step_run(tmp_path: Path) -> None:
    # Two step runs publishing the same names, interleaved: latest of every name comes from one of them.
    store = ArtifactStore(tmp_path / "store")
    first, second = store.begin(), store.begin()
    src = _write(tmp_path / "x.txt", "x")
    store.log("x.txt", "raw_data", [src], txn=first)   # x.txt:v0
    store.log("x.txt", "raw_data", [src], txn=second)  # x.txt:v1
    store.log("y.txt", "raw_data", [src], txn=second)  # y.txt:v0
    store.log("y.txt", "raw_data", [src], txn=first)   # y.txt:v1
    second.commit()
    first.commit()
    assert (store.get("x.txt:latest").ref, store.get("y.txt:latest").ref) == ("x.txt:v0", "y.txt:v1")


def test_pipeline_pins_what_it_produced() -> None:
    params = {"raw_stats": "user_stats.parquet:latest", "all_anime": "all_anime.csv:v3", "url": "http://x.org/a.csv",
              "flow": "ID_used.csv:latest", "n": 5}
    pinned = pin_inputs(params, {"user_stats.parquet": "user_stats.parquet:v7", "all_anime.csv": "all_anime.csv:v9"})
    # Regression: steps read name:latest, so a concurrent pipeline's download could feed this one's preprocess.
    assert pinned == {**params, "raw_stats": "user_stats.parquet:v7"}
    check_inputs("preprocess", {"user_stats.parquet": "user_stats.parquet:v7"}, {"user_stats.parquet": "user_stats.parquet:v7"})
    with pytest.raises(UserInputError, match="consumed user_stats.parquet:v8 instead of user_stats.parquet:v7"):
        check_inputs("preprocess", {"user_stats.parquet": "user_stats.parquet:v8"}, {"user_stats.parquet": "user_stats.parquet:v7"})


# Runs the real download step and SIGKILLs it at one point of publishing.
KILL_SCRIPT = """
import os, signal, sys
import anime_recs.store.artifacts as artifacts
point = sys.argv[1]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
real_log, real_write = artifacts.ArtifactStore.log, artifacts._write_text_atomic
def log(self, *a, **k):
    version = real_log(self, *a, **k)
    if point == f"after_stage_{len(k['txn'].staged) if k.get('txn') else 0}":
        die()
    return version
def write(path, text):
    if point == "before_commit_record" and path.suffix == ".json":
        die()
    real_write(path, text)
    if point == "after_commit_record" and path.suffix == ".json":
        die()
artifacts.ArtifactStore.log, artifacts._write_text_atomic = log, write
sys.argv = ["download.py", "--sample_users", sys.argv[2], "--sample_anime", "40", "--sample_mean_items", "10"]
import runpy
runpy.run_path("download/download.py", run_name="__main__")
"""
RAW = ("user_stats.parquet", "all_anime.csv", "synopses.csv")


def _latest_transactions(store: ArtifactStore) -> set[str]:
    """The step runs (transactions) the latest versions of the raw artifacts come from."""
    return {json.loads((store.get(f"{name}:latest").path / MANIFEST).read_text())["transaction"] for name in RAW}


@pytest.mark.slow
def test_kill_9_between_publishes_leaves_latest_from_one_complete_run(tmp_path: Path) -> None:
    # Regression: kill -9 between two publishes left a mixed set of `latest` versions and .staging-* folders forever.
    env = child_env(ANIME_RECS_ARTIFACTS=str(tmp_path / "artifacts"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                    ANIME_RECS_WANDB_MODE="disabled")
    env.pop("MLFLOW_RUN_ID", None)

    def run(users: int, at: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", KILL_SCRIPT, at, str(users)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=180)

    def leftovers() -> list[Path]:
        staging = list((tmp_path / "artifacts").glob("*/.staging-*"))
        return staging + [p for name in RAW for p in (tmp_path / "artifacts" / name).glob("v*")
                          if int(p.name[1:]) not in [v.version for v in store.versions(name)]]

    first = run(30, "none")
    assert first.returncode == 0, first.stderr[-2000:]
    store = ArtifactStore(tmp_path / "artifacts")
    for users, point in enumerate(("after_stage_1", "after_stage_2", "before_commit_record", "after_commit_record"), start=31):
        before = _latest_transactions(store)
        killed = run(users, point)
        assert killed.returncode == -9, killed.stderr[-2000:]
        after = _latest_transactions(store)
        assert len(after) == 1, point  # every latest comes from one step run ...
        assert after == before or point == "after_commit_record", point  # ... the earlier complete one unless the commit landed
        listed = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "artifacts", "list"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert listed.returncode == 0 and listed.stdout.count("(latest)") == 3
        assert point == "after_commit_record" or leftovers()  # the killed run left folders behind, never listed ...
        assert all(f"{p.parent.name}:{p.name}" not in listed.stdout for p in leftovers())

    rerun = run(40, "none")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(_latest_transactions(store)) == 1 and store.get("user_stats.parquet:latest").metadata["n_users"] == 40
    assert leftovers() == []  # ... and the next run cleaned them up


# ---------------------------------------------------------------- concurrency, for real
STORE_RACE = """
import sys
from anime_recs.pipeline.tracking import ensure_tracking_store
import mlflow
ensure_tracking_store()
with mlflow.start_run(run_name=sys.argv[1]):
    mlflow.log_param("worker", sys.argv[1])
"""


@pytest.mark.slow
def test_processes_starting_together_on_a_fresh_mlflow_store(tmp_path: Path) -> None:
    # Regression: `sqlite3.OperationalError: table _alembic_tmp_experiments already exists` in one of two processes.
    env = child_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    env.pop("MLFLOW_RUN_ID", None)
    procs = [subprocess.Popen([sys.executable, "-c", STORE_RACE, str(i)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    errors = [proc.communicate(timeout=180)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], "\n".join(errors)[-3000:]
    con = sqlite3.connect(tmp_path / "mlflow.db")
    assert con.execute("select count(*) from runs").fetchone()[0] == 4
    con.close()


def _pipeline(cwd: Path, *overrides: str) -> subprocess.Popen:
    env = child_env()
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        env.pop(key, None)
    return subprocess.Popen([sys.executable, str(REPO / "main.py"), "main.execute_steps='download,preprocess'",
                             "main.wandb_mode=disabled", "data.sample_anime=120", "data.sample_mean_items=30", *overrides],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_pipelines_with_different_data_at_once_on_a_fresh_store(tmp_path: Path) -> None:
    # Regression: one pipeline's preprocess consumed the other's download (both read user_stats.parquet:latest),
    # and one of two pipelines on a fresh MLflow store died in the alembic migration race.
    sizes = {"a": 300, "b": 450}
    procs = {key: _pipeline(tmp_path, f"data.sample_users={n}", "data.num_reviews=5", f"main.experiment_name=exp_{key}")
             for key, n in sizes.items()}
    outputs = {key: proc.communicate(timeout=600)[0] for key, proc in procs.items()}
    for key, proc in procs.items():
        assert proc.returncode == 0, outputs[key][-4000:]
    # With no tracking URI, python main.py keeps everything in runs/ below where it runs, never beside the checkout.
    con = sqlite3.connect(tmp_path / "runs" / "mlflow.db")
    runs = {}
    for key in sizes:
        (parent,) = [r for (r,) in con.execute(
            "select r.run_uuid from runs r join experiments e on r.experiment_id = e.experiment_id "
            "where e.name = ? and r.name = 'pipeline'", (f"exp_{key}",))]
        tags = dict(con.execute("select key, value from tags where run_uuid = ?", (parent,)).fetchall())
        children = [r for (r,) in con.execute("select run_uuid from tags where key = 'mlflow.parentRunId' and value = ?", (parent,))]
        params = {k: v for run in children for k, v in con.execute("select key, value from params where run_uuid = ?", (run,))}
        runs[key] = (tags, params)
    con.close()
    store = ArtifactStore(tmp_path / "runs" / "artifacts")
    for key, n in sizes.items():
        tags, params = runs[key]
        raw = store.get(tags["output.user_stats.parquet"])
        clean = store.get(tags["output.preprocessed_stats.parquet"])
        assert raw.metadata["n_users"] == n  # the download of this pipeline ...
        assert params["input.user_stats.parquet"] == raw.ref  # ... is what its preprocess recorded ...
        assert clean.metadata["rows"] + sum(clean.metadata["removed"].values()) == raw.metadata["rows"]  # ... and used
    assert runs["a"][0]["output.user_stats.parquet"] != runs["b"][0]["output.user_stats.parquet"]


@pytest.mark.slow
def test_kill_9_of_the_pipeline_group_stops_the_running_step_and_publishes_nothing(tmp_path: Path) -> None:
    import psutil

    env = child_env(ANIME_RECS_ARTIFACTS=str(tmp_path / "artifacts"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY"):
        env.pop(key, None)
    # A slow neural_network step (the original network, many epochs) so the kill lands while it trains.
    pipeline = subprocess.Popen([sys.executable, str(REPO / "main.py"), "main.execute_steps='download,preprocess,neural_network'",
                                 "main.wandb_mode=disabled", "data.sample_users=300", "data.sample_anime=120",
                                 "model=original", "model.epochs=500", "model.patience=500", "model.batch_size=32"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(pipeline.stdout.readline, "")), daemon=True)
    reader.start()

    def step_processes() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            try:
                if process.environ().get("ANIME_RECS_PIPELINE", "").startswith(f"{pipeline.pid}:") and process.pid != pipeline.pid:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def training_started() -> bool:  # the step's run carries its tags once run_step is inside it
        if not (tmp_path / "mlflow.db").is_file():
            return False
        con = sqlite3.connect(tmp_path / "mlflow.db")
        try:
            return bool(con.execute("select count(*) from tags where key = 'anime_recs.step' and value = 'neural_network'")
                        .fetchone()[0])
        except sqlite3.OperationalError:  # tables not made yet
            return False
        finally:
            con.close()

    deadline = time.monotonic() + 300
    while not training_started() and time.monotonic() < deadline:
        assert pipeline.poll() is None, "".join(lines)[-3000:]
        time.sleep(0.2)
    time.sleep(1.0)
    store = ArtifactStore(tmp_path / "artifacts")
    names_before = set(store.names())
    assert "anime_nn_embeddings" not in names_before and step_processes(), "".join(lines)[-3000:]
    os.killpg(pipeline.pid, signal.SIGKILL)
    pipeline.wait(10)
    stopped_by = time.monotonic() + 5
    while step_processes() and time.monotonic() < stopped_by:
        time.sleep(0.1)
    assert step_processes() == []
    time.sleep(3)  # nothing appears afterwards either
    assert set(store.names()) == names_before
    assert not list((tmp_path / "artifacts").glob(".transactions/*.json")) or all(
        "anime_nn" not in path.read_text() for path in (tmp_path / "artifacts").glob(".transactions/*.json"))
    con = sqlite3.connect(tmp_path / "mlflow.db")
    status = dict(con.execute("select name, status from runs").fetchall())
    con.close()
    assert status["neural_network"] == "KILLED" and status["pipeline"] == "KILLED"
