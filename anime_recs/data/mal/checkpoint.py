"""What a refresh has fetched so far, kept so that a rerun after ``kill -9`` or Ctrl-C continues.

- :class:`JsonlLog`: an append-only JSON-lines file, one record per finished item,
  each line flushed and fsync'ed before the item counts as done. A line cut short
  by a kill is dropped on the next open (the item is simply fetched again), so
  the log never holds half a record and never two records that both count.
- :class:`UserIds`: the private user-name → user-id map. Ids are assigned once
  and never change, so a user keeps their id across refreshes; names never leave
  this file (the published ``user_stats`` holds ids only).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from anime_recs.core.errors import UserInputError
from anime_recs.core.io import atomic_write

logger = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """Create ``path`` readable by the owner only (it holds user names); return it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class JsonlLog:
    """An append-only JSON-lines checkpoint; records are keyed by ``key_field``."""

    def __init__(self, path: Path, key_field: str) -> None:
        self.path = Path(path)
        self.key_field = key_field
        self._repair()
        self.records: dict[Any, dict[str, Any]] = {}
        for record in self._read():
            self.records[record[key_field]] = record  # a repeated key (never written twice by us): the last wins

    def _repair(self) -> None:
        """Cut a last line that a kill left unfinished (no trailing newline)."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            logger.warning("%s: dropping an unfinished last record (%d bytes) left by an interruption", self.path.name, len(data) - keep)
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())

    def _read(self) -> Iterable[dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise UserInputError(f"checkpoint {self.path} line {number} is damaged; delete that line (it is fetched again)") from None

    def __contains__(self, key: Any) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished item durably (the item counts as done only after this returns)."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records[record[self.key_field]] = record


def read_user_names(path: Path) -> list[str]:
    """User names from a text file: one per line; blank lines and ``#`` comments ignored; repeats once.

    Raises:
        UserInputError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"user names file {path} does not exist; write one MyAnimeList user name per line")
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.setdefault(name.lower(), name)  # MyAnimeList user names are case-insensitive
    return list(names.values())


class UserIds:
    """The private, stable user-name → id map (a JSON file written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.ids: dict[str, int] = {}
        if self.path.is_file():
            try:
                self.ids = {str(k): int(v) for k, v in json.loads(self.path.read_text(encoding="utf-8")).items()}
            except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                raise UserInputError(f"user id map {self.path} is damaged; restore it from a backup (ids must stay stable)") from None

    def assign(self, names: list[str]) -> dict[str, int]:
        """Ids of ``names``: known names keep theirs, new names get the next free ids in order."""
        next_id = max(self.ids.values(), default=-1) + 1
        added = False
        for name in names:
            if name.lower() not in self.ids:
                self.ids[name.lower()] = next_id
                next_id += 1
                added = True
        if added:
            atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(self.ids, indent=1, ensure_ascii=False), encoding="utf-8"))
            os.chmod(self.path, 0o600)
        return {name: self.ids[name.lower()] for name in names}
