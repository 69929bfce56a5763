"""Reading and validating the three MyAnimeList files.

- user stats (parquet or csv): ``user_id, anime_id, rating, watching_status, watched_episodes``
- all anime (csv or parquet): ``MAL_ID, Name, Score, Genres, ..., Type, Episodes, ..., Source, ...``
- synopses (csv): ``MAL_ID, Name, Score, Genres, sypnopsis`` (sic)

Every loader checks required columns, types, value ranges and that there are rows,
and raises a :class:`~anime_recs.core.errors.DataValidationError` that names the file (as
the user gave it: pass ``shown=`` when reading a temporary copy) and the column.
Files that are not tables at all (binary, gzip named ``.csv``, an HTML page, not
UTF-8) are recognised by :func:`check_text_table` before any parser sees them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from anime_recs.core.errors import DataValidationError, cut, plain

logger = logging.getLogger(__name__)

#: The file name of each raw file where the pipeline writes it (a download, a MyAnimeList refresh).
RAW_FILE_NAMES = {"stats": "user_stats.parquet", "all_anime": "all_anime.csv", "synopses": "synopses.csv"}
STATS_COLUMNS = ("user_id", "anime_id", "rating", "watching_status", "watched_episodes")
STATS_DTYPES = {
    "user_id": np.int64,
    "anime_id": np.int64,
    "rating": np.int8,
    "watching_status": np.int8,
    "watched_episodes": np.int32,
}
WATCHING_STATUS = {1: "watching", 2: "completed", 3: "on hold", 4: "dropped", 6: "plan to watch"}
ANIME_TYPES = ("TV", "Movie", "OVA", "Special", "ONA", "Music")
ANIME_REQUIRED = ("MAL_ID", "Name", "Score", "Genres", "Type", "Episodes", "Source")
ANIME_COLUMNS = (
    "MAL_ID", "Name", "Score", "Genres", "English name", "Japanese name", "Type", "Episodes",
    "Aired", "Premiered", "Producers", "Licensors", "Studios", "Source", "Duration", "Rating",
    "Ranked", "Popularity", "Members", "Favorites", "Watching", "Completed", "On-Hold", "Dropped",
    "Plan to Watch", "Score-10", "Score-9", "Score-8", "Score-7", "Score-6", "Score-5", "Score-4",
    "Score-3", "Score-2", "Score-1",
)  # fmt: skip
SYNOPSES_COLUMNS = ("MAL_ID", "Name", "Score", "Genres", "sypnopsis")
UNKNOWN = "Unknown"


def is_parquet(path: Path) -> bool:
    """True when the file starts with parquet's magic bytes."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def _require_file(path: Path, what: str, shown: str | None = None) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{what} file {shown or path} does not exist; check the path or URL in the config")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{what} file {shown or path} is empty; download it again")
    return path


# Signatures of files that are not text tables, and what to do about them.
_NOT_A_TABLE = (
    (b"\x1f\x8b", "is gzip-compressed; decompress it (gunzip) and give the .csv"),
    (b"PK\x03\x04", "is a zip archive; unzip it and give the .csv inside"),
    (b"\xfd7zXZ", "is xz-compressed; decompress it and give the .csv"),
)


def check_text_table(path: Path, what: str, shown: str | None = None, sniff: int = 64 << 10) -> None:
    """Refuse, in one line, a file that a CSV parser would choke on: compressed, binary, HTML or not UTF-8.

    Raises:
        DataValidationError: naming the file and what it really is.
    """
    with open(path, "rb") as handle:
        head = handle.read(sniff)
    problem = next((why for magic, why in _NOT_A_TABLE if head.startswith(magic)), None)
    if problem is None and b"\x00" in head:
        problem = "holds binary data, not CSV text; check that it is the right file"
    if problem is None and head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        problem = "is an HTML/XML page, not a CSV table; use the link to the raw file (e.g. GitHub's ?raw=True)"
    if problem is None:
        try:
            # A cut multi-byte character at the end of the sniffed block is fine.
            head.decode("utf-8", errors="strict") if len(head) < sniff else head[:-3].decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = (f"is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start}); "
                       "re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    if problem:
        raise DataValidationError(f"{what} file {shown or path} {problem}")


def _require_rows(rows: int, what: str, shown: str) -> None:
    if rows == 0:
        raise DataValidationError(f"{what} file {shown} has a header but no rows; check that it is the complete file")


def _missing_columns(columns: list[str], required: tuple[str, ...], path: Path | str, what: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        has = ", ".join(cut(str(c), 40) for c in columns[:40])
        raise DataValidationError(f"{what} file {path} lacks column(s) {', '.join(missing)}; it has: {cut(has, 300)}")


@contextmanager
def _readable(path: Path | str, what: str) -> Iterator[None]:
    """Turn parser failures inside the block into one-line errors naming the file."""
    try:
        yield
    except DataValidationError:
        raise
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataValidationError(f"{what} file {path} cannot be read ({plain(first, 120)}); it may be truncated: "
                                  "download it again") from None


def _read_table(path: Path, what: str, columns: list[str] | None = None, shown: str | None = None) -> pd.DataFrame:
    """Read parquet or CSV into pandas, turning parser failures into one-line errors."""
    if not is_parquet(path):
        check_text_table(path, what, shown)
    with _readable(shown or path, what):
        if is_parquet(path):
            return pq.read_table(path, columns=columns).to_pandas()
        return pd.read_csv(path, usecols=columns, low_memory=False)


def table_columns(path: Path, what: str, shown: str | None = None) -> list[str]:
    """Column names of a parquet or CSV file without reading its rows."""
    if not is_parquet(path):
        check_text_table(path, what, shown)
    with _readable(shown or path, what):
        if is_parquet(path):
            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, nrows=0).columns)


# Ids and counts beyond this cannot be stored as int64 exactly.
_INT_LIMIT = 2.0**62


def _numeric(frame: pd.DataFrame, column: str, path: Path | str, what: str, missing: tuple[str, ...] = ()) -> pd.Series:
    """The column as numbers; empty cells and the words in ``missing`` become NaN, anything else non-numeric is an error."""
    raw = frame[column]
    if missing:
        raw = raw.where(~raw.isin(missing), np.nan)
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        example = raw[bad].iloc[0]
        words = [word for word in missing if word]
        allowed = f" (or {', '.join(words)})" if words else ""
        raise DataValidationError(f"{what} file {path}: column {column} holds non-numeric values such as {plain(example)} "
                                  f"in {int(bad.sum()):,} row(s); it must hold numbers{allowed}")
    return values


def _as_int(frame: pd.DataFrame, column: str, dtype: type, path: Path | str, what: str) -> None:
    limit = min(float(np.iinfo(dtype).max), _INT_LIMIT)
    raw = frame[column]
    if pd.api.types.is_integer_dtype(raw.dtype) and (len(raw) == 0 or -limit <= raw.min() and raw.max() <= limit):
        # Whole numbers that fit already (a parquet batch without gaps): the checks below cannot fail.
        frame[column] = raw.astype(dtype)
        return
    values = _numeric(frame, column, path, what)
    floats = values.dropna().to_numpy(dtype=np.float64)
    fraction = np.mod(floats, 1) != 0
    if fraction.any():
        raise DataValidationError(f"{what} file {path}: column {column} must hold whole numbers; "
                                  f"found {plain(floats[fraction][0])} in {int(fraction.sum()):,} row(s)")
    # Casting would silently wrap values that do not fit (a rating of 300 would become 44).
    huge = np.abs(floats) > limit
    if huge.any():
        raise DataValidationError(f"{what} file {path}: column {column} holds {plain(floats[huge][0])}, far outside its range; "
                                  "check the file")
    # NaNs stay (as floats); preprocess counts and drops them.
    frame[column] = values.astype(dtype) if values.notna().all() else values


def validate_stats(frame: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """Check and type a user-stats frame; NaN rows are kept for preprocess to count and drop.

    ``path`` is only shown in messages: the file as the user named it.
    """
    what = "user stats"
    _missing_columns(list(frame.columns), STATS_COLUMNS, path, what)
    frame = frame[list(STATS_COLUMNS)].copy()
    for column, dtype in STATS_DTYPES.items():
        _as_int(frame, column, dtype, path, what)
    checks = {
        "rating": (0, 10, "0..10 (0 = not rated)"),
        "watching_status": (1, 6, "1, 2, 3, 4 or 6"),
        "watched_episodes": (0, 100_000, ">= 0"),
        "user_id": (0, np.iinfo(np.int64).max, ">= 0"),
        "anime_id": (0, np.iinfo(np.int64).max, ">= 0"),
    }
    for column, (low, high, expected) in checks.items():
        values = frame[column]
        out = (values < low) | (values > high)
        if column == "watching_status":
            out |= values == 5
        if out.any():
            raise DataValidationError(
                f"{what} file {path}: column {column} must be {expected}; found {plain(values[out].iloc[0])} "
                f"in {int(out.sum()):,} row(s)"
            )
    return frame


def load_stats(path: Path | str, shown: str | None = None) -> pd.DataFrame:
    """Load and validate a user-stats parquet/CSV file (``shown``: its name in messages)."""
    shown = shown or str(path)
    path = _require_file(Path(path), "user stats", shown)
    columns = table_columns(path, "user stats", shown)
    _missing_columns(columns, STATS_COLUMNS, shown, "user stats")
    frame = _read_table(path, "user stats", list(STATS_COLUMNS), shown)
    _require_rows(len(frame), "user stats", shown)
    return validate_stats(frame, shown)


def validate_anime(frame: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """Check and type the all-anime table (``anime_id`` is accepted for ``MAL_ID``).

    ``Score`` and ``Episodes`` hold numbers or ``Unknown``; any other word is an error.
    """
    if "MAL_ID" not in frame.columns and "anime_id" in frame.columns:
        # The anime_2020.parquet copy renamed MAL_ID and filled unknown scores with the mean
        # (6.509999...); real scores have two decimals, so anything else was "Unknown".
        frame = frame.rename(columns={"anime_id": "MAL_ID"})
        score = pd.to_numeric(frame["Score"], errors="coerce")
        imputed = (np.abs(score * 100 - np.round(score * 100)) > 1e-6).fillna(False)
        frame["Score"] = frame["Score"].astype(object).where(~imputed, UNKNOWN)
    _missing_columns(list(frame.columns), ANIME_REQUIRED, path, "all anime")
    frame = frame.copy()
    _as_int(frame, "MAL_ID", np.int64, path, "all anime")
    if frame["MAL_ID"].isna().any():
        raise DataValidationError(f"all anime file {path}: column MAL_ID has empty values")
    if frame["MAL_ID"].duplicated().any():
        dup = frame.loc[frame["MAL_ID"].duplicated(), "MAL_ID"].iloc[0]
        raise DataValidationError(f"all anime file {path}: column MAL_ID repeats id {plain(dup)}")
    for column in ("Score", "Episodes"):
        frame[column] = _numeric(frame, column, path, "all anime", missing=(UNKNOWN, "")).astype("float64")
    for column in ("Name", "Genres", "Type", "Source", "English name", "Japanese name"):
        if column in frame.columns:
            frame[column] = frame[column].fillna(UNKNOWN).astype(str)
        else:
            frame[column] = UNKNOWN
    out = frame["Score"].notna() & ~frame["Score"].between(0, 10)
    if out.any():
        raise DataValidationError(f"all anime file {path}: column Score must be 0..10 or Unknown; "
                                  f"found {plain(frame.loc[out, 'Score'].iloc[0])}")
    return frame.reset_index(drop=True)


def _load_table(path: Path | str, what: str, shown: str | None) -> tuple[pd.DataFrame, str]:
    """Read a whole table that must have rows; return it and the name to show."""
    shown = shown or str(path)
    frame = _read_table(_require_file(Path(path), what, shown), what, shown=shown)
    _require_rows(len(frame), what, shown)
    return frame, shown


def load_anime(path: Path | str, shown: str | None = None) -> pd.DataFrame:
    """Load and validate the all-anime table (csv or parquet; ``shown``: its name in messages)."""
    return validate_anime(*_load_table(path, "all anime", shown))


def validate_synopses(frame: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """Check and type the synopses table (``synopsis`` is accepted for ``sypnopsis``)."""
    if "sypnopsis" not in frame.columns and "synopsis" in frame.columns:
        frame = frame.rename(columns={"synopsis": "sypnopsis"})
    _missing_columns(list(frame.columns), ("MAL_ID", "sypnopsis"), path, "synopses")
    frame = frame.copy()
    _as_int(frame, "MAL_ID", np.int64, path, "synopses")
    frame["sypnopsis"] = frame["sypnopsis"].fillna("").astype(str)
    return frame.drop_duplicates("MAL_ID").reset_index(drop=True)


def load_synopses(path: Path | str, shown: str | None = None) -> pd.DataFrame:
    """Load and validate the synopses table (``shown``: its name in messages)."""
    return validate_synopses(*_load_table(path, "synopses", shown))


VALIDATORS = {"stats": load_stats, "all_anime": load_anime, "synopses": load_synopses}


def validate_file(kind: str, path: Path | str, shown: str | None = None) -> int:
    """Validate a raw file of ``kind`` (stats, all_anime, synopses); return its row count.

    Args:
        kind: ``stats``, ``all_anime`` or ``synopses``.
        path: the file to read.
        shown: how the user named it (URL or path), for messages; default ``path``.

    Raises:
        DataValidationError: unreadable file, missing columns, bad values or no rows.
    """
    shown = shown or str(path)
    if kind == "stats":
        path = _require_file(Path(path), "user stats", shown)
        if not is_parquet(path):
            return len(load_stats(path, shown))
        _missing_columns(table_columns(path, "user stats", shown), STATS_COLUMNS, shown, "user stats")
        # Validate batch by batch so files larger than memory are fine.
        rows = 0
        with _readable(shown, "user stats"):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2_000_000, columns=list(STATS_COLUMNS)):
                validate_stats(batch.to_pandas(), shown)
                rows += batch.num_rows
        _require_rows(rows, "user stats", shown)
        return rows
    return len(VALIDATORS[kind](path, shown))
