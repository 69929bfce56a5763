"""Versioned artifacts with Weights & Biases semantics, stored locally and offline.

``log_artifact(name, type, files, ...)`` publishes ``name:v0``, ``name:v1``, ...;
``use_artifact("name:v3" | "name:latest", type)`` returns the local folder of
that version after checking every file's sha256.

Guarantees:
- a published version never changes (files are read-only, hashes are checked on use);
- publishing is atomic: files are staged in a hidden folder and the finished
  folder is renamed into place, so a crash leaves nothing a reader can see;
- two writers never receive the same version (an exclusive lock per name).

Layout: ``<root>/<name>/v<N>/{files..., manifest.json}``. The root is, in order:
``$ANIME_RECS_ARTIFACTS``; ``artifacts/`` beside the MLflow sqlite store
(``mlflow.db``) when ``MLFLOW_TRACKING_URI`` points at one; ``./artifacts``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactError

logger = logging.getLogger(__name__)

ROOT_ENV = "ANIME_RECS_ARTIFACTS"
MANIFEST = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_VERSION_RE = re.compile(r"^v(\d+)$")


def default_root() -> Path:
    """Where artifacts live when no root is given (see module docstring)."""
    env_root = os.environ.get(ROOT_ENV)
    if env_root:
        return Path(env_root).expanduser().resolve()
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if tracking.startswith("sqlite:///"):
        return (Path(tracking[len("sqlite:///") :]).parent / "artifacts").resolve()
    return (Path.cwd() / "artifacts").resolve()


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``name:version`` (version defaults to ``latest``)."""
    name, sep, version = ref.rpartition(":")
    if not sep:
        return ref, "latest"
    if not version:
        raise ArtifactError(f"artifact reference {ref!r} has an empty version; use NAME:vN or NAME:latest")
    return name, version


@dataclass(frozen=True)
class ArtifactVersion:
    """One published, immutable version of an artifact."""

    name: str
    version: int
    type: str
    path: Path
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""

    @property
    def ref(self) -> str:
        """``name:vN``."""
        return f"{self.name}:v{self.version}"

    def file(self, filename: str | None = None) -> Path:
        """Path of the named file, or of the only file when ``filename`` is None."""
        if filename is None:
            if len(self.files) != 1:
                raise ArtifactError(
                    f"artifact {self.ref} holds {len(self.files)} files ({', '.join(sorted(self.files))}); name one"
                )
            filename = next(iter(self.files))
        if filename not in self.files:
            raise ArtifactError(f"artifact {self.ref} has no file {filename!r}; it holds: {', '.join(sorted(self.files))}")
        return self.path / filename


class ArtifactStore:
    """A folder of versioned artifacts (the ``local`` backend)."""

    def __init__(self, root: Path | str | None = None) -> None:
        """Open (and create) the store at ``root`` or :func:`default_root`."""
        self.root = Path(root).expanduser().resolve() if root else default_root()

    # ----------------------------------------------------------------- reading
    def names(self) -> list[str]:
        """Names that have at least one published version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self._versions(p.name))

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = []
        for child in folder.iterdir():
            match = _VERSION_RE.match(child.name)
            # A version counts only once its manifest is inside, i.e. after the atomic rename.
            if match and (child / MANIFEST).is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def versions(self, name: str) -> list[ArtifactVersion]:
        """All published versions of ``name``, oldest first."""
        return [self._read(name, v) for v in self._versions(name)]

    def _read(self, name: str, version: int) -> ArtifactVersion:
        path = self.root / name / f"v{version}"
        manifest = json.loads((path / MANIFEST).read_text())
        return ArtifactVersion(
            name=name,
            version=version,
            type=manifest["type"],
            path=path,
            description=manifest.get("description", ""),
            metadata=manifest.get("metadata", {}),
            files=manifest.get("files", {}),
            created=manifest.get("created", ""),
        )

    def get(self, ref: str, type: str | None = None, verify: bool = True) -> ArtifactVersion:
        """Resolve ``name:vN`` / ``name:latest`` to a published version.

        Raises:
            ArtifactError: unknown name or version, wrong type, or a file whose
                sha256 no longer matches the manifest.
        """
        name, version_text = parse_ref(ref)
        versions = self._versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise ArtifactError(
                f"no artifact named {name!r} in {self.root}; published artifacts: {known} "
                "(run the step that produces it, or set ANIME_RECS_ARTIFACTS to the right store)"
            )
        if version_text == "latest":
            version = versions[-1]
        else:
            match = _VERSION_RE.match(version_text)
            if not match or int(match.group(1)) not in versions:
                listed = ", ".join(f"v{v}" for v in versions)
                raise ArtifactError(f"artifact {name!r} has no version {version_text!r}; it has: {listed}, latest")
            version = int(match.group(1))
        artifact = self._read(name, version)
        if type is not None and artifact.type != type:
            raise ArtifactError(f"artifact {artifact.ref} has type {artifact.type!r}, not {type!r}; check the artifact name")
        if verify:
            self._verify(artifact)
        return artifact

    def _verify(self, artifact: ArtifactVersion) -> None:
        for filename, info in artifact.files.items():
            path = artifact.path / filename
            if not path.is_file():
                raise ArtifactError(f"artifact {artifact.ref} is damaged: {filename} is missing; re-run the step that produces it")
            if sha256_of(path) != info["sha256"]:
                raise ArtifactError(
                    f"artifact {artifact.ref} is damaged: {filename} changed after it was published "
                    "(sha256 mismatch); re-run the step that produces it"
                )

    # ----------------------------------------------------------------- writing
    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def log(
        self,
        name: str,
        type: str,
        files: Iterable[Path | str] | dict[str, Path | str],
        description: str = "",
        metadata: dict[str, Any] | None = None,
        move: bool = False,
    ) -> ArtifactVersion:
        """Publish files as the next version of ``name``.

        Args:
            name: artifact name (letters, digits, ``_.-``), e.g. ``preprocessed_stats.parquet``.
            type: artifact type, checked by readers (e.g. ``raw_data``).
            files: paths, or a mapping of file name inside the artifact -> path.
            description: free text shown by ``anime-recs artifacts list``.
            metadata: JSON-serialisable facts (source URL, scaling, metrics, ...).
            move: move the files instead of copying them (for large temporaries).

        Returns:
            The published version.
        """
        if not _NAME_RE.match(name):
            raise ArtifactError(f"invalid artifact name {name!r}: use letters, digits, '_', '.', '-'")
        mapping = {Path(p).name: Path(p) for p in files} if not isinstance(files, dict) else {k: Path(v) for k, v in files.items()}
        if not mapping:
            raise ArtifactError(f"artifact {name!r} needs at least one file")
        for target, source in mapping.items():
            if not source.is_file():
                raise ArtifactError(f"cannot publish {name!r}: {source} is not a file")
            if target == MANIFEST:
                raise ArtifactError(f"cannot publish {name!r}: a file may not be called {MANIFEST}")
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            records = {}
            for target, source in mapping.items():
                dest = staging / target
                if move:
                    shutil.move(str(source), dest)
                else:
                    shutil.copyfile(source, dest)
                records[target] = {"sha256": sha256_of(dest), "size": dest.stat().st_size}
                dest.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            manifest = {
                "name": name,
                "type": type,
                "description": description,
                "metadata": metadata or {},
                "files": records,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "mlflow_run_id": os.environ.get("MLFLOW_RUN_ID", ""),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            with self._lock(name):
                existing = self._versions(name)
                # Count half-published leftovers too so a version number is never reused.
                taken = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))]
                version = max(existing + taken, default=-1) + 1
                os.rename(staging, folder / f"v{version}")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        artifact = self._read(name, version)
        logger.info("published artifact %s (%s)", artifact.ref, type)
        return artifact
