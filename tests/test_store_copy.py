"""The artifact store survives being copied and stays inside itself (issue 24, items 1 and 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anime_recs.core.errors import ArtifactError
from anime_recs.store.artifacts import COMMITTED, MANIFEST, ArtifactStore
from tests.conftest import REPO, child_env


def _publish(store: ArtifactStore, tmp_path: Path, name: str, text: str) -> str:
    source = tmp_path / f"{name}-{text}.txt"
    source.write_text(text)
    return store.log(name, "raw_data", {"data.txt": source}).ref


def _listing(store: ArtifactStore) -> dict[str, tuple[list[str], int | None]]:
    return {name: ([v.ref for v in store.versions(name)], store.latest_version(name)) for name in store.names()}


def _copy_like_a_shell_glob(source: Path, target: Path) -> None:
    """``cp -r source/* target/``: the glob skips the hidden ``.transactions/`` at the top."""
    target.mkdir()
    for entry in source.iterdir():
        if not entry.name.startswith("."):
            shutil.copytree(entry, target / entry.name)


def test_a_copy_without_the_hidden_folder_keeps_every_version_after_a_publish(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    for name in ("a.txt", "b.txt"):
        for text in ("1", "2", "3"):
            _publish(store, tmp_path, name, text)
    _publish(store, tmp_path, "a.txt", "4")  # a's latest is its newest, b's is v2
    before = _listing(store)
    copied_root = tmp_path / "copy"
    _copy_like_a_shell_glob(store.root, copied_root)
    assert not (copied_root / ".transactions").exists()
    copied = ArtifactStore(copied_root)
    assert _listing(copied) == before
    new = _publish(copied, tmp_path, "b.txt", "new")  # a writer sweeps: it must remove nothing
    assert new == "b.txt:v3"
    after = _listing(copied)
    assert after["a.txt"] == before["a.txt"]
    assert after["b.txt"] == (before["b.txt"][0] + ["b.txt:v3"], 3)  # latest moves to the new commit
    assert all(row["state"] == "ok" for row in copied.verify())


def test_a_store_from_before_markers_gets_them_on_the_next_publish(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    _publish(store, tmp_path, "a.txt", "1")
    marker = store.root / "a.txt" / "v0" / COMMITTED
    marker.unlink()  # as written by the code before markers: only the commit record says v0 is committed
    _publish(store, tmp_path, "b.txt", "1")
    assert json.loads(marker.read_text())["seq"] == 0
    _copy_like_a_shell_glob(store.root, tmp_path / "copy")
    assert ArtifactStore(tmp_path / "copy").latest_version("a.txt") == 0


KILLED_MID_TRANSACTION = """
import os, signal, sys
from pathlib import Path
from anime_recs.store.artifacts import ArtifactStore
store = ArtifactStore(sys.argv[1])
src = Path(sys.argv[2]); src.write_text("half")
txn = store.begin()
store.log("a.txt", "raw_data", [src], txn=txn)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_transaction_is_still_removed_and_only_it(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    _publish(store, tmp_path, "a.txt", "1")
    done = subprocess.run([sys.executable, "-c", KILLED_MID_TRANSACTION, str(store.root), str(tmp_path / "half.txt")],
                          env=child_env(), cwd=REPO, timeout=60, check=False)
    assert done.returncode == -9
    assert (store.root / "a.txt" / "v1").is_dir()  # staged, never committed
    assert [row["state"] for row in store.verify("a.txt")] == ["ok", "not visible"]
    assert _publish(store, tmp_path, "a.txt", "2") == "a.txt:v2"
    assert not (store.root / "a.txt" / "v1").exists()
    assert [v.ref for v in store.versions("a.txt")] == ["a.txt:v0", "a.txt:v2"]


@pytest.mark.parametrize("entry", ["/etc/passwd", "../../x.txt", "sub/data.txt", ".."])
def test_a_manifest_naming_a_file_outside_its_folder_is_damaged(entry: str, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    _publish(store, tmp_path, "a.txt", "1")
    manifest_path = store.root / "a.txt" / "v0" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {entry: manifest["files"]["data.txt"]}
    manifest_path.chmod(0o644)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="is damaged: .* which is not a file inside its version folder") as caught:
        store.get("a.txt:v0")
    assert "\n" not in str(caught.value)
    assert [row["state"] for row in store.verify()] == ["damaged"]


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    _publish(store, tmp_path, "a.txt", "1")
    _publish(store, tmp_path, "a.txt", "2")
    data = store.root / "a.txt" / "v0" / "data.txt"
    outside = tmp_path / "outside.txt"
    outside.write_text("1")  # the same bytes: only the link gives it away
    data.chmod(0o644)
    data.unlink()
    data.symlink_to(outside)
    with pytest.raises(ArtifactError, match="data.txt is a symbolic link, which the store does not follow"):
        store.get("a.txt:v0")
    linked_version = store.root / "a.txt" / "v7"
    linked_version.symlink_to(store.root / "a.txt" / "v1", target_is_directory=True)
    assert [v.ref for v in store.versions("a.txt")] == ["a.txt:v0", "a.txt:v1"]
    states = {row["artifact"]: row["state"] for row in store.verify()}
    assert states == {"a.txt:v0": "damaged", "a.txt:v1": "ok", "a.txt:v7": "not visible"}


def test_artifacts_verify_in_the_cli(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    _publish(store, tmp_path, "a.txt", "1")
    command = [sys.executable, "-m", "anime_recs.cli.main", "--root", str(store.root), "artifacts", "verify"]
    ok = subprocess.run(command, env=child_env(), cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "a.txt:v0" in ok.stdout and "1 ok, 0 not visible" in ok.stdout
    data = store.root / "a.txt" / "v0" / "data.txt"
    data.chmod(0o644)
    data.write_text("changed")
    bad = subprocess.run(command, env=child_env(), cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "sha256 mismatch" in bad.stdout and "1 damaged" in bad.stdout
    assert "Traceback" not in bad.stderr
    assert os.access(store.root / "a.txt" / "v0" / MANIFEST, os.R_OK)
