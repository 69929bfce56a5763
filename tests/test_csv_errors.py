"""A malformed line in a big user-stats CSV: one error line with the line number, nothing published; a killed
conversion leaves the source untouched and no artifact."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.data.csv_errors import find_bad_line
from anime_recs.data.download import csv_to_parquet
from anime_recs.data.synthetic import write_animelist_csv
from tests.conftest import REPO, child_env, step_module

DOWNLOAD = step_module("download")
HEADER = ["user_id", "anime_id", "rating", "watching_status", "watched_episodes"]
SMALL = ["--sample_users", "50", "--sample_anime", "40", "--sample_mean_items", "10"]


@pytest.fixture(scope="module")
def animelist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300,000 rows of a MyAnimeList-shaped CSV (4.5 MB)."""
    path = tmp_path_factory.mktemp("csv") / "animelist.csv"
    write_animelist_csv(str(path), np.arange(1, 501), np.full(500, 12.0), n_rows=300_000, n_users=1_000, seed=1)
    return path


def with_line(source: Path, target: Path, number: int, text: str) -> Path:
    """A copy of ``source`` with line ``number`` (1-based, the header is line 1) replaced by ``text``."""
    lines = source.read_text().splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    target.write_text("".join(lines))
    return target


BAD_LINES = {
    "word": ("17,5,seven,2,3", "column rating holds 'seven' where whole numbers are expected"),
    "short": ("17,5,7,2", "has 4 fields where the header has 5"),
    "long": ("17,5,7,2,3,9", "has 6 fields where the header has 5"),
    "fraction": ("17,5.5,7,2,3", "column anime_id holds '5.5' where whole numbers are expected"),
    "huge": ("17,5,7,2,99999999999999999999", "column watched_episodes holds '99999999999999999999' where whole numbers"),
}


@pytest.mark.parametrize(("text", "problem"), [BAD_LINES["word"], BAD_LINES["short"]])
def test_bad_line_in_the_middle_is_one_line_with_its_number(text: str, problem: str, animelist: Path, tmp_path: Path,
                                                            store_env: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source = with_line(animelist, tmp_path / "animelist.csv", 150_001, text)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    # A 1 MB block size is what makes the 4.5 MB file "big": the bad line is in the 3rd of 5 blocks.
    monkeypatch.setattr("anime_recs.pipeline.steps.download.csv_to_parquet",
                        lambda s, d, shown=None: csv_to_parquet(s, d, block_size=1 << 20, shown=shown))
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        DOWNLOAD.main([*SMALL, "--from_local", "true", "--local_fname", str(source)])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-2000:]
    assert f"user stats file {source}, line 150,001 [{text}]: {problem}" in lines[0], lines[0]
    assert ArtifactStore(store_env).names() == []  # nothing published
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_find_bad_line_counts_lines_across_chunks(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anime_recs.data.csv_errors._CHUNK", 1000)  # many newline-counting chunks
    text, problem = BAD_LINES[case]
    rows = [f"{i},{i % 7},{i % 11},2,{i % 5}" for i in range(5_000)]
    rows[3_210] = text
    rows[1_000] = ""  # Arrow skips blank lines; they still count as lines of the file
    path = tmp_path / "s.csv"
    path.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    bad = find_bad_line(path, 3_000, HEADER, HEADER, 100_000)
    assert bad is not None and (bad.number, bad.text) == (3_212, text) and problem in bad.problem
    assert find_bad_line(path, 3_211, HEADER, HEADER, 100_000) is None  # nothing wrong after it


KILL_CONVERSION = """
import sys, time
import anime_recs.data.download as download
from anime_recs.core.io import RowGroupWriter
real_write = RowGroupWriter.write
def slow_write(self, piece):
    print("batch", flush=True)
    time.sleep(0.5)
    real_write(self, piece)
RowGroupWriter.write = slow_write
import anime_recs.pipeline.steps.download as step
step.csv_to_parquet = lambda s, d, shown=None: download.csv_to_parquet(s, d, block_size=1 << 18, shown=shown)
sys.argv = ["download.py", "--sample_users", "50", "--sample_anime", "40", "--sample_mean_items", "10",
            "--from_local", "true", "--local_fname", sys.argv[1]]
import runpy
runpy.run_path("download/download.py", run_name="__main__")
"""


@pytest.mark.slow
def test_killed_conversion_leaves_the_source_and_no_artifact(animelist: Path, tmp_path: Path, tracking_uri: str) -> None:
    artifacts = tmp_path / "artifacts"
    env = child_env(ANIME_RECS_ARTIFACTS=str(artifacts), MLFLOW_TRACKING_URI=tracking_uri,
                    ANIME_RECS_WANDB_MODE="disabled", TMPDIR=str(tmp_path / "tmp"))
    env.pop("MLFLOW_RUN_ID", None)
    (tmp_path / "tmp").mkdir()
    before = hashlib.sha256(animelist.read_bytes()).hexdigest()
    child = subprocess.Popen([sys.executable, "-c", KILL_CONVERSION, str(animelist)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        seen = 0
        deadline = time.monotonic() + 120
        while seen < 3 and time.monotonic() < deadline:  # mid-way: 3 of ~18 batches written
            line = child.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break  # the child ended without converting: the assert below says so
            seen += line.startswith("batch")
        assert seen == 3
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert hashlib.sha256(animelist.read_bytes()).hexdigest() == before  # the source is only read
    assert not artifacts.exists() or ArtifactStore(artifacts).names() == []  # no artifact, not even a partial one
    finished = [p for p in (tmp_path / "tmp").rglob("*.parquet") if not p.name.startswith(".")]
    assert finished == []  # only a hidden .part file may be left in the step's scratch folder ...
    assert list((tmp_path / "tmp").rglob(".user_stats.parquet.*.part"))  # ... and there is one: it died mid-conversion
