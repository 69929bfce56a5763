"""The model version a server answers with, swapped atomically when a newer one is published.

A request takes :meth:`ModelHolder.current` once and answers entirely from that
:class:`~anime_recs.serve.service.Service`, so a reload in the middle of a request
never mixes two versions in one response. A new version is built completely
(outside any lock) before the one reference is replaced; a version that fails to
load is logged and the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.recommend.loader import MODEL_ARTIFACT
from anime_recs.serve.service import Service, load_service

logger = logging.getLogger(__name__)


class ModelHolder:
    """Holds the current :class:`Service`; :meth:`refresh` loads a newer published version.

    Args:
        root: Artifact store folder (``None``: the default).
        pinned: Serve exactly this version and never reload (``None``: newest).
        loader: Builds a service from ``(root, ref)``; :func:`load_service` by default.
    """

    def __init__(self, root: Path | str | None = None, pinned: str | None = None,
                 loader: Callable[[Path | str | None, str | None], Service] = load_service) -> None:
        self.root, self.pinned, self._loader = root, pinned, loader
        self._service = loader(root, pinned)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Service:
        """The service to answer one request with (take it once per request)."""
        return self._service

    def refresh(self) -> bool:
        """Load and swap in the newest model version if it is newer; returns whether it swapped."""
        if self.pinned is not None:
            return False
        with self._reload_lock:  # one reload at a time; readers never wait
            latest = ArtifactStore(self.root).latest_version(MODEL_ARTIFACT)
            if latest is None or f"{MODEL_ARTIFACT}:v{latest}" == self._service.version:
                return False
            try:
                fresh = self._loader(self.root, f"{MODEL_ARTIFACT}:v{latest}")
            except Exception as exc:  # noqa: BLE001 - a bad new version must not take the server down
                logger.error("could not load %s:v%d, still serving %s: %s", MODEL_ARTIFACT, latest, self._service.version, exc)
                return False
            self._service = fresh  # one reference assignment: atomic for readers
            logger.info("now serving %s", fresh.version)
            return True

    def start(self, every: float) -> None:
        """Check for a newer version every ``every`` seconds in a daemon thread."""
        if self.pinned is not None or every <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="model-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reload thread."""
        self._stop.set()
