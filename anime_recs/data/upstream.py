"""A folder of the upstream Kaggle files (``data=files data.dir=DIR``): which file is which.

The "Anime Recommendation Database 2020" names its files ``animelist.csv`` (every list entry; or
``rating_complete.csv``, completed and rated ones only), ``anime.csv`` and ``anime_with_synopsis.csv``.
A source configured as :data:`DIR_SOURCE` is the file of its kind in ``data.dir``; a ``.parquet`` twin of a
file is taken before the ``.csv`` (it is smaller and faster to read).
"""

from __future__ import annotations

from pathlib import Path

from anime_recs.core.errors import UserInputError

#: The source value meaning "the upstream file of this kind in data.dir".
DIR_SOURCE = "dir"
#: Upstream stems of each raw file, in order of preference.
UPSTREAM_STEMS: dict[str, tuple[str, ...]] = {
    "stats": ("animelist", "rating_complete"),
    "all_anime": ("anime",),
    "synopses": ("anime_with_synopsis",),
}
SUFFIXES = (".parquet", ".csv")
#: Source option of each kind, as the user types it.
SOURCE_KEYS = {"stats": "data.stats_url", "all_anime": "data.all_anime_url", "synopses": "data.synopses_url"}


def expected_names(kind: str) -> str:
    """The file names accepted for one kind, for messages: ``animelist.csv (or rating_complete.csv, .parquet twins)``."""
    stems = UPSTREAM_STEMS[kind]
    alternatives = "".join(f" or {stem}.csv" for stem in stems[1:])
    return f"{stems[0]}.csv{alternatives} (or a .parquet twin)"


def data_dir(directory: str, base: Path) -> Path:
    """``data.dir`` as an existing folder, relative paths against ``base`` (where the user ran).

    Raises:
        UserInputError: unset, missing or not a folder, naming the option.
    """
    text = str(directory or "").strip()
    if text in ("", "???"):
        raise UserInputError("data=files needs data.dir=DIR: a folder holding animelist.csv (or rating_complete.csv), "
                             "anime.csv and anime_with_synopsis.csv")
    folder = Path(text).expanduser()
    folder = folder if folder.is_absolute() else base / folder
    if not folder.is_dir():
        raise UserInputError(f"data.dir={text}: no such folder; give the folder holding the upstream files "
                             f"(animelist.csv, anime.csv, anime_with_synopsis.csv)")
    return folder.resolve()


def upstream_file(folder: Path, kind: str, shown_dir: str) -> Path:
    """The file of ``kind`` (``stats``, ``all_anime``, ``synopses``) in an upstream folder.

    Raises:
        UserInputError: naming the folder as the user typed it and the names looked for.
    """
    for stem in UPSTREAM_STEMS[kind]:
        for suffix in SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    raise UserInputError(f"data.dir={shown_dir} has no {expected_names(kind)} for {SOURCE_KEYS[kind]}; copy it there under "
                         f"its upstream name, or set {SOURCE_KEYS[kind]} to another source")


def resolve_dir_sources(data: dict, base: Path) -> dict:
    """The ``data`` config with every source set to :data:`DIR_SOURCE` replaced by the absolute path of its file.

    Raises:
        UserInputError: ``data.dir`` unset or wrong, or a file missing from it.
    """
    kinds = [kind for kind, key in SOURCE_KEYS.items() if str(data.get(key.split(".")[1], "")).strip().lower() == DIR_SOURCE]
    if not kinds:
        return data
    folder = data_dir(str(data.get("dir", "")), base)
    resolved = dict(data)
    for kind in kinds:
        resolved[SOURCE_KEYS[kind].split(".")[1]] = str(upstream_file(folder, kind, str(data.get("dir"))))
    return resolved
