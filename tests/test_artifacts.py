"""Artifact store: versions, latest, immutability, types, concurrency, crash safety."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anime_recs.store.artifacts import ArtifactStore, parse_ref
from anime_recs.core.errors import ArtifactError
from tests.conftest import REPO, child_env


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_versions_increase_and_latest_resolves(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    first = store.log("data.csv", "raw_data", [_file(tmp_path, "data.csv", "a\n1\n")], "d", {"k": 1})
    second = store.log("data.csv", "raw_data", [_file(tmp_path, "data.csv", "a\n2\n")])
    assert (first.ref, second.ref) == ("data.csv:v0", "data.csv:v1")
    assert store.get("data.csv:latest").version == 1
    assert store.get("data.csv").version == 1
    assert store.get("data.csv:v0").file().read_text() == "a\n1\n"
    assert store.get("data.csv:v0").metadata == {"k": 1}


def test_published_version_is_immutable_and_checked(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    artifact = store.log("m.txt", "model", [_file(tmp_path, "m.txt", "weights")])
    path = artifact.file()
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only for non-root users
    path.chmod(0o644)
    path.write_text("tampered")
    with pytest.raises(ArtifactError, match="changed after it was published"):
        store.get("m.txt:v0")


def test_unknown_name_version_and_wrong_type_list_what_exists(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.log("a.csv", "raw_data", [_file(tmp_path, "a.csv", "x")])
    with pytest.raises(ArtifactError, match="published artifacts: a.csv"):
        store.get("b.csv:latest")
    with pytest.raises(ArtifactError, match="it has: v0, latest"):
        store.get("a.csv:v7")
    with pytest.raises(ArtifactError, match="has type 'raw_data', not 'model'"):
        store.get("a.csv:v0", type="model")
    assert parse_ref("x.csv") == ("x.csv", "latest")


def _publish_many(root: str, worker: int, count: int) -> None:
    store = ArtifactStore(root)
    tmp = Path(root).parent / f"src{worker}"
    tmp.mkdir(exist_ok=True)
    for i in range(count):
        src = tmp / "f.txt"
        src.write_text(f"{worker}-{i}")
        store.log("shared.txt", "raw_data", [src])


def test_two_concurrent_writers_never_share_a_version(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_publish_many, args=(root, w, 15)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    versions = ArtifactStore(root).versions("shared.txt")
    assert [v.version for v in versions] == list(range(30))
    contents = {v.file().read_text() for v in versions}
    assert len(contents) == 30  # every publish landed in its own version


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
import anime_recs.store.artifacts as artifacts
real = artifacts.sha256_of
def crash_after_first(path, *a, **k):
    real(path)
    os.kill(os.getpid(), signal.SIGKILL)  # simulate kill -9 in the middle of publishing
artifacts.sha256_of = crash_after_first
src = Path(sys.argv[2]); src.write_text("payload")
artifacts.ArtifactStore(sys.argv[1]).log("crashy.txt", "raw_data", [src])
"""


def test_crash_mid_publish_leaves_no_visible_version(tmp_path: Path) -> None:
    root = tmp_path / "store"
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(root), str(tmp_path / "src.txt")],
                            env=child_env(), cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == -9
    store = ArtifactStore(root)
    assert store.versions("crashy.txt") == []
    with pytest.raises(ArtifactError):
        store.get("crashy.txt:latest")
    again = store.log("crashy.txt", "raw_data", [_file(tmp_path, "ok.txt", "ok")])
    assert again.ref == "crashy.txt:v0"
