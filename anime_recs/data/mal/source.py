"""The ``mal-api:FOLDER`` download source: publish what ``anime-recs mal refresh --out FOLDER`` wrote.

``data.stats_url=mal-api:mal_data`` (and the same for ``all_anime_url`` and
``synopses_url``) makes the download step take ``user_stats.parquet``,
``all_anime.csv`` and ``synopses.csv`` from the refresh folder ``mal_data``, check
them like any other source and publish them. The folder's ``private/`` part (user
names, checkpoints) is never read here. The step needs no network and no client id.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from anime_recs.core.errors import UserInputError
from anime_recs.data.mal.refresh import MANIFEST, OUTPUT_FILES

logger = logging.getLogger(__name__)

PREFIX = "mal-api:"


def is_mal_source(source: str) -> bool:
    """True for ``mal-api:FOLDER``."""
    return str(source).strip().lower().startswith(PREFIX)


def folder_of(source: str) -> Path:
    """The refresh folder named by ``mal-api:FOLDER``.

    Raises:
        UserInputError: no folder given.
    """
    folder = str(source).strip()[len(PREFIX):].strip()
    if not folder:
        raise UserInputError(f"source {source!r} names no folder; write mal-api:FOLDER (the --out of `anime-recs mal refresh`)")
    return Path(folder).expanduser()


def absolute(source: str, base: Path) -> str:
    """``mal-api:`` with the folder made absolute against ``base`` (steps run in their own folder)."""
    folder = folder_of(source)
    return PREFIX + str(folder if folder.is_absolute() else (base / folder).resolve())


def manifest(source: str) -> dict[str, Any]:
    """The ``refresh.json`` of a finished refresh.

    Raises:
        UserInputError: the folder holds no finished refresh.
    """
    folder = folder_of(source)
    path = folder / MANIFEST
    if not path.is_file():
        raise UserInputError(f"{folder} holds no finished MyAnimeList refresh ({MANIFEST} is missing); "
                             f"run `anime-recs mal refresh --out {folder} ...` first (it resumes where it stopped)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise UserInputError(f"{path} is damaged; rerun `anime-recs mal refresh --out {folder} ...` to rewrite it") from None


def refreshed_file(source: str, kind: str) -> Path:
    """The raw file of ``kind`` (stats, all_anime, synopses) in the refresh folder of ``source``.

    Raises:
        UserInputError: no finished refresh, or no user lists when ``kind`` is stats.
    """
    info = manifest(source)
    folder = folder_of(source)
    if kind == "stats" and not info.get("users"):
        raise UserInputError(f"the refresh in {folder} fetched no user lists; pass --users FILE to `anime-recs mal refresh`, "
                             "or take data.stats_url from another source")
    if not info.get("complete", False):
        logger.warning("the refresh in %s had failures; rerun `anime-recs mal refresh` to fetch what is missing", folder)
    return folder / OUTPUT_FILES[kind]


def metadata(source: str) -> dict[str, Any]:
    """Artifact metadata of a refresh: when it finished and what it holds (counts only, no names)."""
    info = manifest(source)
    return {"mal_refresh": {k: info.get(k) for k in ("finished_at", "complete", "anime", "users", "user_stats_rows", "options")}}
