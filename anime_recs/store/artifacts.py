"""Versioned artifacts with Weights & Biases semantics, stored locally and offline.

``log_artifact(name, type, files, ...)`` publishes ``name:v0``, ``name:v1``, ...;
``use_artifact("name:v3" | "name:latest", type)`` returns the local folder of
that version after checking every file's sha256.

Guarantees:
- a published version never changes (files are read-only, hashes are checked on use);
- publishing is atomic: files are staged in a hidden folder and the finished
  folder is renamed into place, so a crash leaves nothing a reader can see;
- a :class:`Transaction` groups the publishes of one step run: they become visible
  together when it commits (one atomic file creation) or never (abort, crash,
  ``kill -9``); leftovers of dead transactions are removed by the next writer, and
  only those: a version is removed only when its transaction's lock file proves the
  transaction started here and died unfinished;
- the store is self-describing: each committed version carries its commit (``.committed``:
  transaction and sequence) in its own folder, so a copy made without the hidden
  ``.transactions/`` folder (``cp -r store/* copy/``) keeps every version, and ``latest``;
- the store stays inside itself: manifest entries are plain file names inside their
  version folder, and symbolic links (files or version folders) are never followed;
- ``latest`` is the version of the most recently *committed* transaction, so the
  ``latest`` of every artifact a step publishes comes from one complete step run;
- two writers never receive the same version (an exclusive lock per name), and a
  version number is never reused, not even one of a transaction that died.

Layout: ``<root>/<name>/v<N>/{files..., manifest.json, .committed}``, and ``<root>/.transactions/``
(``<id>.lock``: held by a running transaction; ``<id>.json``: its commit record).
The root is, in order: ``$ANIME_RECS_ARTIFACTS``; ``artifacts/`` beside the MLflow
sqlite store (``mlflow.db``) when ``MLFLOW_TRACKING_URI`` points at one; ``./runs/artifacts``
(:data:`RUNS_DIR`: the one folder where a run's outputs go, never the checkout's root).
"""

from __future__ import annotations

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

from anime_recs.core.errors import ArtifactError, plain
from anime_recs.core.lifeline import pipeline_alive
from anime_recs.store.locking import create_locked, file_lock, owner_gone

logger = logging.getLogger(__name__)

ROOT_ENV = "ANIME_RECS_ARTIFACTS"
MANIFEST = "manifest.json"
TXN_DIR = ".transactions"
LAST_VERSION = ".last_version"
#: In a version folder, written after its transaction commits: ``{"transaction": id, "seq": n}``.
COMMITTED = ".committed"
# Names may not start with a dot: dot folders hold the store's own bookkeeping.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_STAGING_RE = re.compile(r"^\.staging-(?:([0-9a-f]{32})-)?[0-9a-f]{32}$")
_VERSION_RE = re.compile(r"^v(\d+)$")


#: The folder (below where you run) that holds everything runs write by default: ``mlflow.db``, ``mlruns/``,
#: ``artifacts/``, ``wandb/``, Hydra's ``multirun/``. Git ignores it.
RUNS_DIR = "runs"


def default_root() -> Path:
    """Where artifacts live when no root is given (see module docstring)."""
    env_root = os.environ.get(ROOT_ENV)
    if env_root:
        return Path(env_root).expanduser().resolve()
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if tracking.startswith("sqlite:///"):
        return (Path(tracking[len("sqlite:///") :]).parent / "artifacts").resolve()
    return (Path.cwd() / RUNS_DIR / "artifacts").resolve()


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


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest, or None when it is complete."""
    if not isinstance(manifest, dict):
        return "does not hold a JSON object"
    if not isinstance(manifest.get("type"), str):
        return "lacks the key 'type'"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "lacks the key 'files' (the list of files and their sha256)"
    for filename, info in files.items():
        if filename in ("", ".", "..") or "/" in filename or "\\" in filename or "\x00" in filename:
            return f"names {plain(filename)}, which is not a file inside its version folder"
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or not isinstance(info.get("size"), int):
            return f"has no sha256/size for the file {plain(filename)}"
    if not isinstance(manifest.get("metadata", {}), dict):
        return "has a 'metadata' that is not a JSON object"
    return None


class Transaction:
    """Publishes that become visible together, or not at all.

    Created by :meth:`ArtifactStore.begin`; every :meth:`ArtifactStore.log` with
    ``txn=`` stages a version that readers cannot see until :meth:`commit`.
    While the transaction lives, its process holds ``<root>/.transactions/<id>.lock``;
    when the process dies the kernel releases the lock, and the next writer removes
    what the transaction staged.
    """

    def __init__(self, store: ArtifactStore) -> None:
        """Start a transaction in ``store`` (use :meth:`ArtifactStore.begin`)."""
        self.store = store
        self.id = uuid.uuid4().hex
        self.staged: list[ArtifactVersion] = []
        self.state = "open"
        self._lock = create_locked(store.txn_dir / f"{self.id}.lock")

    def _release(self) -> None:
        (self.store.txn_dir / f"{self.id}.lock").unlink(missing_ok=True)
        self._lock.close()

    def commit(self) -> int:
        """Make every staged version visible at once; return the commit's sequence number."""
        if self.state != "open":
            raise ArtifactError(f"transaction {self.id} is already {self.state}")
        if not pipeline_alive():  # its pipeline was stopped: what it staged must not appear
            self.abort()
            raise ArtifactError("the pipeline that started this step was stopped; nothing of this step run was published")
        txn_dir = self.store.txn_dir
        with file_lock(txn_dir / ".lock"):
            seq = self.store.last_commit_seq() + 1
            _write_text_atomic(txn_dir / ".seq", str(seq))
            record = {"seq": seq, "refs": [a.ref for a in self.staged], "committed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "mlflow_run_id": os.environ.get("MLFLOW_RUN_ID", "")}
            # The one atomic step that publishes the whole group.
            _write_text_atomic(txn_dir / f"{self.id}.json", json.dumps(record, indent=2))
        for artifact in self.staged:  # each version now says so itself (a copy without .transactions/ keeps it)
            _write_text_atomic(artifact.path / COMMITTED, json.dumps({"transaction": self.id, "seq": seq}))
        self.state = "committed"
        self._release()
        for artifact in self.staged:
            logger.debug("published artifact %s (%s)", artifact.ref, artifact.type)
        return seq

    def abort(self) -> None:
        """Remove everything staged; nothing of this transaction ever becomes visible."""
        if self.state != "open":
            return
        for artifact in self.staged:
            shutil.rmtree(artifact.path, ignore_errors=True)
        self.store.remove_staging(self.id)
        self.state = "aborted"
        self._release()


class ArtifactStore:
    """A folder of versioned artifacts (the ``local`` backend)."""

    def __init__(self, root: Path | str | None = None) -> None:
        """Open (and create) the store at ``root`` or :func:`default_root`."""
        self.root = Path(root).expanduser().resolve() if root else default_root()
        self._commits: dict[str, int | None] = {}

    @property
    def txn_dir(self) -> Path:
        """Where transaction locks and commit records live."""
        return self.root / TXN_DIR

    # ----------------------------------------------------------------- reading
    def _name_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name))

    def names(self) -> list[str]:
        """Names that have at least one published version."""
        return [p.name for p in self._name_dirs() if self._versions(p.name)]

    def _manifest(self, name: str, version: int) -> dict[str, Any]:
        """The parsed manifest of ``name:vN``; a damaged one is a one-line error naming the file."""
        path = self.root / name / f"v{version}"
        file = path / MANIFEST
        try:
            manifest = json.loads(file.read_text(encoding="utf-8"))
            problem = _manifest_problem(manifest)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = f"is not valid JSON ({type(exc).__name__}: {plain(str(exc), 80)})"
        if problem:
            raise ArtifactError(
                f"artifact {name}:v{version} is damaged: {file} {problem}; "
                f"move the folder {path} away or re-run the step that produces it"
            )
        return manifest

    def _commit_seq(self, txn: str) -> int | None:
        """Sequence number of a committed transaction, None while uncommitted."""
        if self._commits.get(txn) is None:
            record = self.txn_dir / f"{txn}.json"
            try:
                self._commits[txn] = int(json.loads(record.read_text(encoding="utf-8"))["seq"])
            except FileNotFoundError:
                return None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ArtifactError(f"commit record {record} is damaged ({plain(str(exc), 80)}); "
                                    "move it away and re-run the step that published it") from None
        return self._commits[txn]

    def _version_seq(self, folder: Path, txn: str) -> int | None:
        """Commit sequence of the version in ``folder`` staged by ``txn``: its own marker, else the commit record."""
        try:
            marker = json.loads((folder / COMMITTED).read_text(encoding="utf-8"))
            if isinstance(marker, dict) and marker.get("transaction") == txn:
                return int(marker["seq"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged marker: the commit record decides
        return self._commit_seq(txn)

    def last_commit_seq(self) -> int:
        """The highest commit sequence in the store (-1 when none): the ``.seq`` counter or any version's marker."""
        seq_file = self.txn_dir / ".seq"
        try:
            last = int(seq_file.read_text() or -1) if seq_file.is_file() else -1
        except (OSError, ValueError):
            last = -1
        for marker in self.root.glob(f"*/v*/{COMMITTED}"):
            try:
                last = max(last, int(json.loads(marker.read_text(encoding="utf-8"))["seq"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return last

    def _visible(self, name: str) -> dict[int, int]:
        """Committed versions of ``name`` -> commit sequence (-1 for versions from before transactions)."""
        folder = self.root / name
        try:
            if not _NAME_RE.match(name) or not folder.is_dir():
                return {}
        except OSError:  # e.g. a name longer than the file system allows: no such artifact
            return {}
        found = {}
        for child in folder.iterdir():
            match = _VERSION_RE.match(child.name)
            # A version exists only once its manifest is inside, i.e. after the atomic rename; links are not followed.
            if not match or child.is_symlink() or not (child / MANIFEST).is_file():
                continue
            version = int(match.group(1))
            txn = self._manifest(name, version).get("transaction")
            seq = self._version_seq(child, txn) if txn else -1
            if seq is not None:
                found[version] = seq
        return found

    def _versions(self, name: str) -> list[int]:
        return sorted(self._visible(name))

    def latest_version(self, name: str) -> int | None:
        """The version ``name:latest`` resolves to: the one committed last (None when there is none)."""
        visible = self._visible(name)
        return max(visible, key=lambda v: (visible[v], v)) if visible else None

    def versions(self, name: str) -> list[ArtifactVersion]:
        """All published versions of ``name``, oldest first."""
        return [self._read(name, v) for v in self._versions(name)]

    def _read(self, name: str, version: int) -> ArtifactVersion:
        manifest = self._manifest(name, version)
        return ArtifactVersion(
            name=name,
            version=version,
            type=manifest["type"],
            path=self.root / name / f"v{version}",
            description=manifest.get("description", ""),
            metadata=manifest.get("metadata", {}),
            files=manifest["files"],
            created=manifest.get("created", ""),
        )

    def get(self, ref: str, type: str | None = None, verify: bool = True) -> ArtifactVersion:
        """Resolve ``name:vN`` / ``name:latest`` to a published version.

        Raises:
            ArtifactError: unknown name or version, wrong type, a damaged manifest, or a
                file whose sha256 no longer matches the manifest.
        """
        name, version_text = parse_ref(ref)
        versions = self._versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise ArtifactError(
                f"no artifact named {plain(name)} in {self.root}; published artifacts: {known} "
                "(run the step that produces it, or set ANIME_RECS_ARTIFACTS to the right store)"
            )
        if version_text == "latest":
            version = self.latest_version(name)
        else:
            match = _VERSION_RE.match(version_text)
            if not match or int(match.group(1)) not in versions:
                listed = ", ".join(f"v{v}" for v in versions)
                raise ArtifactError(f"artifact {name!r} has no version {plain(version_text)}; it has: {listed}, latest")
            version = int(match.group(1))
        artifact = self._read(name, version)  # type: ignore[arg-type]
        if type is not None and artifact.type != type:
            raise ArtifactError(f"artifact {artifact.ref} has type {artifact.type!r}, not {type!r}; check the artifact name")
        if verify:
            self._verify(artifact)
        return artifact

    def _verify(self, artifact: ArtifactVersion) -> None:
        for filename, info in artifact.files.items():
            path = artifact.path / filename
            if path.is_symlink():
                raise ArtifactError(f"artifact {artifact.ref} is damaged: {filename} is a symbolic link, which the store "
                                    "does not follow; re-run the step that produces it")
            if not path.is_file():
                raise ArtifactError(f"artifact {artifact.ref} is damaged: {filename} is missing; re-run the step that produces it")
            if sha256_of(path) != info["sha256"]:
                raise ArtifactError(
                    f"artifact {artifact.ref} is damaged: {filename} changed after it was published "
                    "(sha256 mismatch); re-run the step that produces it"
                )

    def verify(self, name: str | None = None) -> list[dict[str, str]]:
        """Check every version folder (of ``name``): its manifest, commit and file hashes.

        Returns:
            One row per folder: ``artifact`` (``name:vN``), ``state`` (``ok``, ``not visible`` or ``damaged``)
            and ``detail``.
        """
        rows = []
        for folder in self._name_dirs():
            if name is not None and folder.name != name:
                continue
            for child in sorted(folder.iterdir(), key=lambda c: (len(c.name), c.name)):
                match = _VERSION_RE.match(child.name)
                if match:
                    state, detail = self._version_state(folder.name, int(match.group(1)), child)
                    rows.append({"artifact": f"{folder.name}:{child.name}", "state": state, "detail": detail})
        return rows

    def _version_state(self, name: str, version: int, folder: Path) -> tuple[str, str]:
        """``(state, detail)`` of one version folder (see :meth:`verify`)."""
        if folder.is_symlink():
            return "not visible", "a symbolic link: the store does not follow links"
        if not (folder / MANIFEST).is_file():
            return "not visible", "no manifest: an unfinished publish"
        try:
            txn = self._manifest(name, version).get("transaction")
            if txn and self._version_seq(folder, txn) is None:
                return "not visible", "never committed: an interrupted publish"
            artifact = self._read(name, version)
            self._verify(artifact)
        except ArtifactError as exc:
            return "damaged", str(exc)
        return "ok", f"{len(artifact.files)} file(s), sha256 verified"

    # ----------------------------------------------------------- transactions
    def begin(self) -> Transaction:
        """Start a transaction (after removing the leftovers of dead ones and marking committed versions)."""
        self.sweep()
        self.mark_committed()
        return Transaction(self)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``with store.transaction() as txn:`` commits on success, aborts on any exception."""
        txn = self.begin()
        try:
            yield txn
        except BaseException:
            txn.abort()
            raise
        txn.commit()

    def remove_staging(self, txn: str | None) -> None:
        """Remove the staging folders of ``txn`` (None: of dead transactions and of the old, lock-less writers)."""
        for folder in self._name_dirs():
            for child in folder.iterdir():
                match = _STAGING_RE.match(child.name)
                if match and (txn is None or match.group(1) == txn):
                    shutil.rmtree(child, ignore_errors=True)

    def _version_folders(self) -> Iterator[tuple[str, int, Path]]:
        """``(name, version, folder)`` of every version folder with a manifest (links excluded)."""
        for folder in self._name_dirs():
            for child in folder.iterdir():
                match = _VERSION_RE.match(child.name)
                if match and not child.is_symlink() and (child / MANIFEST).is_file():
                    yield folder.name, int(match.group(1)), child

    def mark_committed(self) -> int:
        """Give every committed version without one its ``.committed`` marker (stores from before markers); return how many."""
        marked = 0
        for name, version, folder in self._version_folders():
            if (folder / COMMITTED).is_file():
                continue
            try:
                txn = self._manifest(name, version).get("transaction")
            except ArtifactError:
                continue
            seq = self._commit_seq(txn) if txn else None
            if seq is not None:
                _write_text_atomic(folder / COMMITTED, json.dumps({"transaction": txn, "seq": seq}))
                marked += 1
        return marked

    def sweep(self) -> list[str]:
        """Remove what dead transactions staged (versions and staging folders); return the removed folders.

        A transaction is dead when its lock file in ``.transactions/`` exists and nobody holds it. A version is
        removed only then and only when neither its marker nor a commit record says it was committed: a version
        whose transaction left no lock file here (a store copied without ``.transactions/``) is never removed.
        """
        leftovers: dict[str | None, list[Path]] = {}
        for folder in self._name_dirs():
            for child in folder.iterdir():
                staging = _STAGING_RE.match(child.name)
                version = _VERSION_RE.match(child.name)
                if staging:
                    leftovers.setdefault(staging.group(1), []).append(child)
                elif version and not child.is_symlink() and (child / MANIFEST).is_file():
                    try:
                        txn = self._manifest(folder.name, int(version.group(1))).get("transaction")
                    except ArtifactError:
                        continue  # a damaged version is reported when read, never deleted
                    if txn and (self.txn_dir / f"{txn}.lock").is_file() and self._version_seq(child, txn) is None:
                        leftovers.setdefault(txn, []).append(child)
        removed = []
        for txn, paths in leftovers.items():
            lock = self.txn_dir / f"{txn}.lock" if txn else self.txn_dir / ".no-owner"
            with owner_gone(lock) as gone:
                if not gone or (txn and self._commit_seq(txn) is not None):
                    continue  # alive, or committed meanwhile
                for path in paths:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(str(path))
                if txn:
                    lock.unlink(missing_ok=True)
        if removed:
            logger.info("removed %d leftover(s) of interrupted publishes: %s", len(removed), ", ".join(removed))
        return removed

    # ----------------------------------------------------------------- writing
    def log(
        self,
        name: str,
        type: str,
        files: Iterable[Path | str] | dict[str, Path | str],
        description: str = "",
        metadata: dict[str, Any] | None = None,
        move: bool = False,
        txn: Transaction | None = None,
    ) -> ArtifactVersion:
        """Publish files as the next version of ``name``.

        Args:
            name: artifact name (letters, digits, ``_.-``), e.g. ``preprocessed_stats.parquet``.
            type: artifact type, checked by readers (e.g. ``raw_data``).
            files: paths, or a mapping of file name inside the artifact -> path.
            description: free text shown by ``anime-recs artifacts list``.
            metadata: JSON-serialisable facts (source URL, scaling, metrics, ...).
            move: move the files instead of copying them (for large temporaries).
            txn: stage the version in this transaction (visible when it commits);
                None publishes at once, in a transaction of its own.

        Returns:
            The version (published, or staged in ``txn``).
        """
        if txn is None:
            with self.transaction() as own:
                return self.log(name, type, files, description, metadata, move, own)
        if txn.state != "open":
            raise ArtifactError(f"cannot publish {name!r}: its transaction is already {txn.state}")
        if not _NAME_RE.match(name):
            raise ArtifactError(f"invalid artifact name {plain(name)}: use letters, digits, '_', '.', '-' (not first)")
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
        staging = folder / f".staging-{txn.id}-{uuid.uuid4().hex}"
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
                "transaction": txn.id,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            with file_lock(folder / ".lock"):
                last = folder / LAST_VERSION
                # Numbers of dead transactions' versions are never handed out again.
                taken = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))]
                if last.is_file():
                    taken.append(int(last.read_text() or -1))
                version = max(taken, default=-1) + 1
                _write_text_atomic(last, str(version))
                os.rename(staging, folder / f"v{version}")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        artifact = self._read(name, version)
        txn.staged.append(artifact)
        logger.debug("staged artifact %s (%s)", artifact.ref, type)
        return artifact
