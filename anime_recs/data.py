"""Reading and validating the three MyAnimeList files.

- user stats (parquet or csv): ``user_id, anime_id, rating, watching_status, watched_episodes``
- all anime (csv or parquet): ``MAL_ID, Name, Score, Genres, ..., Type, Episodes, ..., Source, ...``
- synopses (csv): ``MAL_ID, Name, Score, Genres, sypnopsis`` (sic)

Every loader checks required columns, types and value ranges and raises a
:class:`~anime_recs.errors.DataValidationError` that names the file and the column.
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

from .errors import DataValidationError

logger = logging.getLogger(__name__)

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


def _require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{what} file {path} does not exist; check the path or URL in the config")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{what} file {path} is empty; download it again")
    return path


def _missing_columns(columns: list[str], required: tuple[str, ...], path: Path, what: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataValidationError(
            f"{what} file {path} lacks column(s) {', '.join(missing)}; it has: {', '.join(map(str, columns[:40]))}"
        )


@contextmanager
def _readable(path: Path, what: str) -> Iterator[None]:
    """Turn parser failures inside the block into one-line errors naming the file."""
    try:
        yield
    except DataValidationError:
        raise
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataValidationError(f"{what} file {path} cannot be read ({first}); it may be truncated: download it again") from None


def _read_table(path: Path, what: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read parquet or CSV into pandas, turning parser failures into one-line errors."""
    with _readable(path, what):
        if is_parquet(path):
            return pq.read_table(path, columns=columns).to_pandas()
        return pd.read_csv(path, usecols=columns, low_memory=False)


def table_columns(path: Path, what: str) -> list[str]:
    """Column names of a parquet or CSV file without reading its rows."""
    with _readable(path, what):
        if is_parquet(path):
            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, nrows=0).columns)


def _as_int(frame: pd.DataFrame, column: str, dtype: type, path: Path, what: str) -> None:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        example = frame.loc[bad, column].iloc[0]
        raise DataValidationError(f"{what} file {path}: column {column} holds non-numeric values such as {example!r}")
    if values.notna().all():
        if not np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0):
            raise DataValidationError(f"{what} file {path}: column {column} must hold whole numbers")
        frame[column] = values.astype(dtype)
    else:
        frame[column] = values  # NaNs stay; preprocess drops them


def validate_stats(frame: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """Check and type a user-stats frame; NaN rows are kept for preprocess to count and drop."""
    path = Path(path)
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
                f"{what} file {path}: column {column} must be {expected}; found {values[out].iloc[0]!r} "
                f"in {int(out.sum())} row(s)"
            )
    return frame


def load_stats(path: Path | str) -> pd.DataFrame:
    """Load and validate a user-stats parquet/CSV file."""
    path = _require_file(Path(path), "user stats")
    columns = table_columns(path, "user stats")
    _missing_columns(columns, STATS_COLUMNS, path, "user stats")
    frame = _read_table(path, "user stats", list(STATS_COLUMNS))
    return validate_stats(frame, path)


def _unknown_to_nan(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace(UNKNOWN, np.nan), errors="coerce")


def validate_anime(frame: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """Check and type the all-anime table (``anime_id`` is accepted for ``MAL_ID``)."""
    path = Path(path)
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
        raise DataValidationError(f"all anime file {path}: column MAL_ID repeats id {dup}")
    frame["Score"] = _unknown_to_nan(frame["Score"]).astype("float64")
    frame["Episodes"] = _unknown_to_nan(frame["Episodes"]).astype("float64")
    for column in ("Name", "Genres", "Type", "Source", "English name", "Japanese name"):
        if column in frame.columns:
            frame[column] = frame[column].fillna(UNKNOWN).astype(str)
        else:
            frame[column] = UNKNOWN
    out = frame["Score"].notna() & ~frame["Score"].between(0, 10)
    if out.any():
        raise DataValidationError(f"all anime file {path}: column Score must be 0..10 or Unknown; found {frame.loc[out, 'Score'].iloc[0]}")
    return frame.reset_index(drop=True)


def load_anime(path: Path | str) -> pd.DataFrame:
    """Load and validate the all-anime table (csv or parquet)."""
    path = _require_file(Path(path), "all anime")
    return validate_anime(_read_table(path, "all anime"), path)


def validate_synopses(frame: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """Check and type the synopses table (``synopsis`` is accepted for ``sypnopsis``)."""
    path = Path(path)
    if "sypnopsis" not in frame.columns and "synopsis" in frame.columns:
        frame = frame.rename(columns={"synopsis": "sypnopsis"})
    _missing_columns(list(frame.columns), ("MAL_ID", "sypnopsis"), path, "synopses")
    frame = frame.copy()
    _as_int(frame, "MAL_ID", np.int64, path, "synopses")
    frame["sypnopsis"] = frame["sypnopsis"].fillna("").astype(str)
    return frame.drop_duplicates("MAL_ID").reset_index(drop=True)


def load_synopses(path: Path | str) -> pd.DataFrame:
    """Load and validate the synopses table."""
    path = _require_file(Path(path), "synopses")
    return validate_synopses(_read_table(path, "synopses"), path)


VALIDATORS = {"stats": load_stats, "all_anime": load_anime, "synopses": load_synopses}


def validate_file(kind: str, path: Path | str) -> int:
    """Validate a raw file of ``kind`` (stats, all_anime, synopses); return its row count."""
    if kind == "stats":
        path = _require_file(Path(path), "user stats")
        if not is_parquet(path):
            return len(load_stats(path))
        _missing_columns(table_columns(path, "user stats"), STATS_COLUMNS, path, "user stats")
        # Validate batch by batch so files larger than memory are fine.
        rows = 0
        with _readable(path, "user stats"):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2_000_000, columns=list(STATS_COLUMNS)):
                validate_stats(batch.to_pandas(), path)
                rows += batch.num_rows
        return rows
    return len(VALIDATORS[kind](path))
