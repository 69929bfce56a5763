"""Artifact backends: where a step's input and output artifacts live (``main.artifact_backend``).

Every backend gives the same contract to :class:`~anime_recs.pipeline.tracking.StepContext`:
``get("name:vN" | "name:latest", type)`` returns a verified local folder (every file's
sha256 checked), and ``publish(txn, ...)`` makes the versions a step run staged
visible together, or not at all. Outputs are always staged in a local
:class:`~anime_recs.store.artifacts.ArtifactStore` transaction first; what differs is the
store of record:

- ``local`` (default): the local store itself. The MLflow run gets a small manifest per
  artifact (version, type, sha256 of every file), never a second copy of the files; a W&B
  run gets a *reference* artifact (checksums, no copy) with the alias ``local-vN``.
- ``mlflow``: the MLflow tracking server's artifact store (``mlflow server
  --artifacts-destination ...``). Files are uploaded to the producing run under
  ``<name>/`` with their manifest; the version becomes visible when the run gets the tags
  ``artifact.<name>.version`` / ``.type`` / ``.sha256`` (one ``log_batch`` request at step
  end). Readers find versions through those tags, download with
  ``mlflow.artifacts.download_artifacts`` into a cache and check the manifest's sha256
  against the tag and every file against the manifest.
- ``wandb``: W&B artifacts (needs W&B online: offline, W&B cannot read artifacts back).
  ``log_artifact`` with aliases, ``use_artifact(ref).download()`` + ``verify()``; the
  version numbers are W&B's own.

The local store doubles as the verified download cache of the remote backends
(``<root>/.remote/<backend>/<name>/v<N>``); without ``$ANIME_RECS_ARTIFACTS`` a step
uses a temporary one, so nothing is kept twice on the machine that runs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Protocol

from anime_recs.store.artifacts import MANIFEST, ArtifactStore, ArtifactVersion, Transaction, parse_ref, sha256_of
from anime_recs.core.parsing import as_id
from anime_recs.core.errors import ArtifactError, UserInputError, plain

logger = logging.getLogger(__name__)

BACKEND_ENV = "ANIME_RECS_ARTIFACT_BACKEND"
BACKENDS = ("local", "mlflow", "wandb")
#: How many concurrent writers may claim the same remote version before a publish gives up.
_CLAIM_ATTEMPTS = 20


def version_tag(name: str, field: str = "version") -> str:
    """The run tag announcing a remote artifact version (``artifact.<name>.version``)."""
    return f"artifact.{name}.{field}"


def manifest_digest(artifact: ArtifactVersion) -> str:
    """One digest for a whole version: sha256 over its files' names and sha256s (stable across stores)."""
    lines = "\n".join(f"{name} {info['sha256']}" for name, info in sorted(artifact.files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def resolve_backend_name(name: str | None = None) -> str:
    """The backend chosen by ``name`` or ``$ANIME_RECS_ARTIFACT_BACKEND`` (default ``local``).

    Raises:
        UserInputError: an unknown backend name.
    """
    chosen = (name or os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if chosen not in BACKENDS:
        raise UserInputError(f"unknown main.artifact_backend {chosen!r}; choose from: {', '.join(BACKENDS)}")
    return chosen


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when an ``http(s)`` MLflow tracking server cannot be reached.

    MLflow's own client retries for minutes before giving up; a refused or silent port is
    better reported at once.

    Raises:
        UserInputError: the server does not answer.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            pass
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UserInputError(f"cannot reach the MLflow tracking server {uri} ({reason}); start it (`mlflow server --host "
                             f"{parsed.hostname} --port {port} --artifacts-destination DIR`) or fix MLFLOW_TRACKING_URI") from None


def verify_folder(folder: Path, files: dict[str, dict[str, Any]], what: str) -> None:
    """Check every file of a downloaded version against its manifest entry.

    Raises:
        ArtifactError: a file is missing or its sha256 differs (one line, naming the file).
    """
    for filename, info in files.items():
        path = folder / filename
        if not path.is_file():
            raise ArtifactError(f"{what} is incomplete: file {plain(filename)} is missing; re-run the step that produced it")
        digest = sha256_of(path)
        if digest != info["sha256"]:
            raise ArtifactError(f"{what} does not match its digest: {plain(filename)} has sha256 {digest[:12]}…, "
                                f"expected {info['sha256'][:12]}…; nothing was used, re-run the step that produced it")


def _freeze(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def require_wandb_online(mode: str) -> None:
    """The W&B backend reads artifacts back, which W&B allows only online.

    Raises:
        UserInputError: ``mode`` is not ``online`` (no key configured, or offline/disabled forced).
    """
    if mode != "online":
        raise UserInputError(f"main.artifact_backend=wandb needs W&B online, but W&B is {mode} (no API key configured or "
                             "main.wandb_mode forces it); run `wandb login` or set WANDB_API_KEY, or use main.artifact_backend=local")


class ArtifactBackend(Protocol):
    """What :class:`~anime_recs.pipeline.tracking.StepContext` needs from a store of record."""

    name: str

    def get(self, ref: str, type: str | None = None) -> ArtifactVersion:
        """Resolve ``name:vN`` / ``name:latest`` to a verified local folder."""

    def publish(self, txn: Transaction, mlflow_module: Any, wandb_run: Any | None) -> list[ArtifactVersion]:
        """Make every version staged in ``txn`` visible together; return them with their final versions."""

    def lineage_ref(self, artifact: ArtifactVersion) -> str | None:
        """The W&B reference of an input for W&B's lineage graph (None: not in W&B)."""


class LocalBackend:
    """The local store is the store of record; MLflow and W&B get manifests and references."""

    name = "local"

    def __init__(self, store: ArtifactStore) -> None:
        """Serve artifacts from ``store``."""
        self.store = store

    def get(self, ref: str, type: str | None = None) -> ArtifactVersion:
        """See :meth:`ArtifactStore.get`."""
        return self.store.get(ref, type)

    def publish(self, txn: Transaction, mlflow_module: Any, wandb_run: Any | None) -> list[ArtifactVersion]:
        """Commit the local transaction; log manifests to MLflow and reference artifacts to W&B."""
        txn.commit()
        for artifact in txn.staged:
            mlflow_module.log_dict(_summary(artifact, "local", str(artifact.path)), f"{artifact.name}/{MANIFEST}")
            if wandb_run is not None:
                import wandb

                mirror = wandb.Artifact(artifact.name, type=artifact.type, description=artifact.description,
                                        metadata={**artifact.metadata, "local_version": artifact.ref})
                for filename in artifact.files:  # a reference keeps the checksum, not a third copy of the file
                    mirror.add_reference(f"file://{artifact.path / filename}", name=filename)
                wandb_run.log_artifact(mirror, aliases=["latest", f"local-v{artifact.version}"])
        return list(txn.staged)

    def lineage_ref(self, artifact: ArtifactVersion) -> str | None:
        """The W&B mirror of this exact local version."""
        return f"{artifact.name}:local-v{artifact.version}"


def _summary(artifact: ArtifactVersion, backend: str, location: str) -> dict[str, Any]:
    """The small record the MLflow run shows for an artifact version."""
    return {"ref": artifact.ref, "type": artifact.type, "backend": backend, "location": location,
            "digest": manifest_digest(artifact), "description": artifact.description,
            "metadata": artifact.metadata, "files": artifact.files}


class MlflowBackend:
    """The MLflow tracking server's artifact store is the store of record (see the module docstring)."""

    name = "mlflow"

    def __init__(self, cache: ArtifactStore, tracking_uri: str | None = None) -> None:
        """Read and publish through the tracking server at ``tracking_uri`` (default: MLflow's current one)."""
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri or mlflow.get_tracking_uri()
        check_tracking_server(self.uri)
        self.client = MlflowClient(self.uri)
        self.cache = cache.root / ".remote" / "mlflow"

    def _claims(self, name: str) -> dict[int, list[Any]]:
        """Published versions of ``name`` -> the runs carrying them (more than one only mid-race)."""
        from mlflow.entities import ViewType

        experiments = [e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ALL)]
        found: dict[int, list[Any]] = {}
        token = None
        while experiments:
            page = self.client.search_runs(experiments, f"tags.`{version_tag(name)}` LIKE '%'", ViewType.ALL,
                                           max_results=1000, page_token=token)
            for run in page:
                value = run.data.tags.get(version_tag(name), "")
                if (version := as_id(value)) is not None:
                    found.setdefault(version, []).append(run)
            token = page.token
            if not token:
                break
        for runs in found.values():
            runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        return found

    def get(self, ref: str, type: str | None = None) -> ArtifactVersion:
        """Resolve through the runs' tags, download once into the cache, verify, return."""
        name, wanted = parse_ref(ref)
        claims = self._claims(name)
        if not claims:
            raise ArtifactError(f"no artifact named {plain(name)} on the MLflow tracking server {self.uri}; "
                                "run the step that produces it with main.artifact_backend=mlflow")
        if wanted == "latest":
            version = max(claims)
        elif wanted.startswith("v") and as_id(wanted[1:]) in claims:
            version = int(wanted[1:])
        else:
            listed = ", ".join(f"v{v}" for v in sorted(claims))
            raise ArtifactError(f"artifact {plain(name)} has no version {wanted!r}; it has: {listed}, latest")
        run = claims[version][0]
        tags = run.data.tags
        if type is not None and tags.get(version_tag(name, "type")) != type:
            raise ArtifactError(f"artifact {name}:v{version} has type {tags.get(version_tag(name, 'type'))!r}, "
                                f"expected {type!r}; pass an artifact of type {type!r}")
        folder = self.cache / name / f"v{version}"
        what = f"artifact {name}:v{version} (MLflow run {run.info.run_id})"
        if not (folder / MANIFEST).is_file():
            self._download(name, run.info.run_id, folder)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        remote = ArtifactVersion(name, version, manifest["type"], folder, manifest.get("description", ""),
                                 manifest.get("metadata", {}), manifest["files"], manifest.get("created", ""))
        if manifest_digest(remote) != tags.get(version_tag(name, "sha256")):
            raise ArtifactError(f"{what} does not match its digest: the manifest on the server differs from the one "
                                "published; nothing was used, re-run the step that produced it")
        verify_folder(folder, remote.files, what)
        return remote

    def _download(self, name: str, run_id: str, folder: Path) -> None:
        """Fetch ``<name>/`` of the producing run into the cache (atomically: a whole folder or nothing)."""
        import mlflow

        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as tmp:
            try:
                local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=tmp,
                                                                 tracking_uri=self.uri))
            except Exception as exc:  # noqa: BLE001 - MLflow raises many types (MlflowException, OSError, requests')
                raise ArtifactError(f"cannot download artifact {name} of MLflow run {run_id} from {self.uri} "
                                    f"({type(exc).__name__}: {plain(str(exc), 120)})") from None
            _freeze(local)
            try:
                os.rename(local, folder)
            except OSError:  # another process filled the cache first; its copy is verified like ours
                if not (folder / MANIFEST).is_file():
                    raise

    def publish(self, txn: Transaction, mlflow_module: Any, wandb_run: Any | None) -> list[ArtifactVersion]:
        """Upload every staged version to the active run, then claim version numbers with one batch of tags.

        Nothing is visible to readers until the tags land. Two writers that claim the same
        number at once both see it; the later run (by start time, then id) moves to the next one.
        """
        run = mlflow_module.active_run()
        for artifact in txn.staged:
            mlflow_module.log_artifacts(str(artifact.path), artifact_path=artifact.name)
        published = []
        for artifact in txn.staged:
            version = self._claim(artifact, run.info.run_id)
            published.append(ArtifactVersion(artifact.name, version, artifact.type, artifact.path, artifact.description,
                                             artifact.metadata, artifact.files, artifact.created))
        txn.abort()  # the local staging was only the upload's source
        return published

    def _claim(self, artifact: ArtifactVersion, run_id: str) -> int:
        from mlflow.entities import RunTag

        name = artifact.name
        extra = [RunTag(version_tag(name, "type"), artifact.type), RunTag(version_tag(name, "sha256"), manifest_digest(artifact))]
        for _ in range(_CLAIM_ATTEMPTS):
            version = max(self._claims(name), default=-1) + 1
            self.client.log_batch(run_id, tags=[*extra, RunTag(version_tag(name), str(version))])
            holders = self._claims(name).get(version, [])
            if holders and holders[0].info.run_id == run_id:
                return version
        raise ArtifactError(f"could not claim a version of {name} after {_CLAIM_ATTEMPTS} attempts (too many writers at once)")

    def lineage_ref(self, artifact: ArtifactVersion) -> str | None:
        """MLflow artifacts are not in W&B."""
        return None


class WandbBackend:
    """W&B artifacts are the store of record; W&B must be online (see the module docstring)."""

    name = "wandb"

    def __init__(self, cache: ArtifactStore, wandb_run: Any | None, mode: str) -> None:
        """Use ``wandb_run`` (online) for reading and publishing.

        Raises:
            UserInputError: W&B is offline or disabled (no key): it could not read artifacts back.
        """
        require_wandb_online(mode if wandb_run is not None else "disabled")
        self.run = wandb_run
        self.cache = cache.root / ".remote" / "wandb"

    def get(self, ref: str, type: str | None = None) -> ArtifactVersion:
        """``use_artifact`` (records lineage), ``download`` into the cache, ``verify``, then our manifest check."""
        name, wanted = parse_ref(ref)
        try:
            remote = self.run.use_artifact(f"{name}:{wanted}", type=type)
        except Exception as exc:  # noqa: BLE001 - wandb raises CommError, ValueError, ...
            raise ArtifactError(f"W&B has no artifact {plain(name)}:{wanted} ({type(exc).__name__}: {plain(str(exc), 120)})") from None
        version = int(str(remote.version).lstrip("v"))
        folder = self.cache / name / f"v{version}"
        what = f"W&B artifact {name}:v{version}"
        try:
            remote.download(root=str(folder))
            remote.verify(root=str(folder))
        except Exception as exc:  # noqa: BLE001 - W&B's verify raises ValueError on a digest mismatch
            raise ArtifactError(f"{what} does not match its digest ({plain(str(exc), 120)}); nothing was used") from None
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        verify_folder(folder, manifest["files"], what)
        return ArtifactVersion(name, version, remote.type, folder, manifest.get("description", ""),
                               manifest.get("metadata", {}), manifest["files"], manifest.get("created", ""))

    def publish(self, txn: Transaction, mlflow_module: Any, wandb_run: Any | None) -> list[ArtifactVersion]:
        """Log every staged version to W&B (aliases ``latest`` and the step's transaction) and wait for W&B's numbers."""
        import wandb

        logged = []
        for artifact in txn.staged:
            remote = wandb.Artifact(artifact.name, type=artifact.type, description=artifact.description, metadata=artifact.metadata)
            remote.add_dir(str(artifact.path))
            logged.append((artifact, self.run.log_artifact(remote, aliases=["latest", f"txn-{txn.id[:12]}"])))
        published = []
        for artifact, remote in logged:
            remote.wait()
            version = int(str(remote.version).lstrip("v"))
            mlflow_module.log_dict(_summary(artifact, "wandb", f"{remote.entity}/{remote.project}/{artifact.name}:v{version}"),
                                   f"{artifact.name}/{MANIFEST}")
            published.append(ArtifactVersion(artifact.name, version, artifact.type, artifact.path, artifact.description,
                                              artifact.metadata, artifact.files, artifact.created))
        txn.abort()
        return published

    def lineage_ref(self, artifact: ArtifactVersion) -> str | None:
        """``get`` already recorded the exact version through ``use_artifact``."""
        return None


def open_backend(name: str, store: ArtifactStore, wandb_run: Any | None, wandb_mode: str) -> ArtifactBackend:
    """The backend called ``name``, with ``store`` as staging area and download cache."""
    if name == "mlflow":
        return MlflowBackend(store)
    if name == "wandb":
        return WandbBackend(store, wandb_run, wandb_mode)
    return LocalBackend(store)


def scratch_store() -> tuple[ArtifactStore, tempfile.TemporaryDirectory]:
    """A temporary local store (staging + cache) for a remote backend when no root is configured."""
    tmp = tempfile.TemporaryDirectory(prefix=f"anime_recs_store_{uuid.uuid4().hex[:6]}_")
    return ArtifactStore(tmp.name), tmp
