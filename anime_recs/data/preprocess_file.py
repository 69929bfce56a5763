"""The preprocess rules out of core: a user-stats parquet file of any size in bounded memory.

Same rules, order, report and output as :func:`anime_recs.data.preprocess.preprocess` (the
in-memory reference it is tested against), in three streamed steps:

1. Read the parquet in batches; validate each batch; mark rows with missing values
   and the row-by-row rules (unrated, unwatched, plan-to-watch, half-watched); send
   each other row's ``user_id, anime_id``, first-rule code and rating to one of K
   bucket files chosen by a hash of ``user_id``.
2. Per bucket (every row of a user is in one bucket, in file order): repeated
   (user, anime) pairs after the first, then users with fewer than ``num_reviews``
   rows left; the rating range of the kept rows.
3. Read the parquet again and write the kept rows (ratings unchanged) as parquet with row
   groups of :data:`anime_recs.core.io.ROW_GROUP` rows (written to a temporary name, renamed when complete).

Memory: a batch, one bucket, and one byte per row for the code of every row (kept in a
memory-mapped file in the scratch folder) plus one for its bucket. K and the batch size
follow from ``memory_limit_gb``, not from the size of the data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from anime_recs.data.files import STATS_COLUMNS, validate_stats
from anime_recs.core.errors import UserInputError
from anime_recs.core.io import RowGroupWriter, atomic_write
from anime_recs.data.preprocess import (
    RULES,
    PreprocessOptions,
    Scaling,
    active_rules,
    check_options,
    clean_frame,
    few_reviews_mask,
    pair_key,
    removed_every_row,
    repeated,
    report_frame,
    row_rules,
    scaling_of,
)

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT_GB = 2.0  # data.memory_limit_gb
BUCKET_BYTES_PER_ROW = 96  # a bucket row in memory with the hash table and factorize temporaries
BATCH_BYTES_PER_ROW = 160  # a batch row as pandas frames, validated, plus masks
_MISSING, _DUPLICATE, _FEW = (RULES.index(rule) + 1 for rule in ("missing_values", "duplicates", "few_reviews"))
_NO_BUCKET = 255
# Bucket file layout: one record per row that has no missing value.
_RECORD = np.dtype([("user", "<i8"), ("anime", "<i8"), ("rating", "<f4"), ("code", "u1")])


@dataclass(frozen=True)
class Plan:
    """How a file is cut to fit the memory limit."""

    batch_rows: int
    buckets: int

    @classmethod
    def for_rows(cls, rows: int, memory_limit_gb: float) -> Plan:
        """Batch size and bucket count that keep a third of ``memory_limit_gb`` for each stage's data.

        Raises:
            UserInputError: a limit too small to process even small batches.
        """
        budget = memory_limit_gb * (1 << 30) / 3
        batch_rows = int(min(4_000_000, budget // BATCH_BYTES_PER_ROW))
        if batch_rows < 10_000:
            raise UserInputError(f"data.memory_limit_gb={memory_limit_gb:g} is too small to preprocess in batches; "
                                      "give it at least 0.01")
        buckets = max(1, math.ceil(rows * BUCKET_BYTES_PER_ROW / budget))
        if buckets >= _NO_BUCKET:
            raise UserInputError(f"{rows:,} rows need more than {_NO_BUCKET - 1} buckets with "
                                      f"data.memory_limit_gb={memory_limit_gb:g}; raise it")
        return cls(batch_rows, buckets)


@dataclass(frozen=True)
class Result:
    """What :func:`preprocess_file` wrote: the report, the scaling and the output's size."""

    report: pd.DataFrame
    scaling: Scaling
    rows: int
    users: int
    anime: int


def bucket_of(users: np.ndarray, buckets: int) -> np.ndarray:
    """Bucket of each user id: a multiplicative hash, so skewed or sequential ids spread evenly."""
    mixed = users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(33)) % np.uint64(buckets)).astype(np.uint8)


def _row_codes(frame: pd.DataFrame, options: PreprocessOptions, anime: pd.DataFrame | None) -> np.ndarray:
    """First-rule code of each row for the rules that see one row at a time (0: none dropped it)."""
    code = np.zeros(len(frame), dtype=np.uint8)
    code[frame.isna().any(axis=1).to_numpy()] = _MISSING
    complete = frame.loc[code == 0]
    sub = np.zeros(len(complete), dtype=np.uint8)
    for rule, mask in row_rules(options):
        sub[(sub == 0) & np.asarray(mask(complete, anime), dtype=bool)] = RULES.index(rule) + 1
    code[code == 0] = sub
    return code


def _split(path: Path, shown: str, plan: Plan, options: PreprocessOptions, anime: pd.DataFrame | None,
           bucket_row: np.ndarray, code: np.ndarray, scratch: Path) -> list[Path]:
    """Step 1: validate, mark row rules, write bucket files; fill ``bucket_row`` and the missing-value codes."""
    files = [scratch / f"bucket-{b:03d}.bin" for b in range(plan.buckets)]
    handles = [open(f, "wb") for f in files]  # noqa: SIM115 - closed below, all together
    try:
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=plan.batch_rows, columns=list(STATS_COLUMNS)):
            frame = validate_stats(batch.to_pandas(), shown)
            rows = slice(offset, offset + len(frame))
            offset += len(frame)
            batch_code = _row_codes(frame, options, anime)
            complete = batch_code != _MISSING
            code[rows] = np.where(complete, 0, _MISSING)
            records = np.empty(int(complete.sum()), dtype=_RECORD)
            kept = frame.loc[complete]
            records["user"] = kept["user_id"].to_numpy(dtype=np.int64)
            records["anime"] = kept["anime_id"].to_numpy(dtype=np.int64)
            records["rating"] = kept["rating"].to_numpy(dtype=np.float32)
            records["code"] = batch_code[complete]
            buckets = bucket_of(records["user"], plan.buckets)
            bucket_row[rows] = _NO_BUCKET
            bucket_row[rows][complete] = buckets
            # A stable sort keeps file order inside each bucket, which "keep the first repeat" relies on.
            order = np.argsort(buckets, kind="stable")
            ends = np.cumsum(np.bincount(buckets, minlength=plan.buckets))
            for b, (start, stop) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)):
                records[order[start:stop]].tofile(handles[b])
            logger.debug("preprocess: read %s rows", f"{offset:,}")
    finally:
        for handle in handles:
            handle.close()
    return files


def _settle(files: list[Path], options: PreprocessOptions, bucket_row: np.ndarray,
            code: np.ndarray) -> tuple[float, float, int, set[int]]:
    """Step 2: repeats and few_reviews per bucket; return the kept rows' rating range, user count and anime ids."""
    low, high, users, anime = math.inf, -math.inf, 0, set()
    for b, file in enumerate(files):
        records = np.fromfile(file, dtype=_RECORD)
        file.unlink()
        bucket_code = np.where(repeated(pair_key(pd.DataFrame({"user_id": records["user"], "anime_id": records["anime"]}))),
                               np.uint8(_DUPLICATE), records["code"])
        alive = bucket_code == 0
        if options.num_reviews > 0 and alive.any():
            few = np.zeros(len(records), dtype=bool)
            few[alive] = few_reviews_mask(records["user"][alive], options.num_reviews)
            bucket_code[few] = _FEW
            alive &= ~few
        code[bucket_row == b] = bucket_code
        if alive.any():
            ratings = records["rating"][alive]
            low, high = min(low, float(ratings.min())), max(high, float(ratings.max()))
            users += len(pd.unique(records["user"][alive]))
            anime.update(pd.unique(records["anime"][alive]).tolist())
    return low, high, users, anime


def _report(code: np.ndarray, options: PreprocessOptions) -> pd.DataFrame:
    """The report rows from the first-rule codes; raises like the in-memory rules do."""
    counts = np.bincount(code, minlength=len(RULES) + 1)
    left = len(code)
    rows = [("input", 0, left)]
    for rule in active_rules(options):
        removed = int(counts[RULES.index(rule) + 1])
        left -= removed
        rows.append((rule, removed, left))
        if left == 0:
            raise removed_every_row(rule)
    return report_frame(rows)


def _write(path: Path, dest: Path, plan: Plan, code: np.ndarray, scaling: Scaling) -> None:
    """Step 3: the kept rows to ``dest`` atomically, in row groups of :data:`anime_recs.core.io.ROW_GROUP` rows."""

    def write_into(tmp: Path) -> None:
        offset = 0
        with RowGroupWriter(tmp) as writer:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=plan.batch_rows, columns=list(STATS_COLUMNS)):
                keep = code[offset:offset + batch.num_rows] == 0
                offset += batch.num_rows
                kept = batch.filter(pa.array(keep)).to_pandas()
                writer.write(pa.Table.from_pandas(clean_frame(kept, scaling), preserve_index=False))

    atomic_write(dest, write_into)


def preprocess_file(path: Path, dest: Path, options: PreprocessOptions, anime: pd.DataFrame | None = None,
                    shown: str | None = None, memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB, scratch: Path | None = None) -> Result:
    """Apply the cleaning rules to a user-stats parquet file and write the clean parquet, out of core.

    Args:
        path: the raw user-stats parquet file (columns as :data:`anime_recs.data.files.STATS_COLUMNS`).
        dest: the clean parquet to write (atomically).
        options: which rules to apply.
        anime: the all-anime table; needed only for ``drop_half_watched``.
        shown: the input's name in messages (e.g. the artifact reference); default ``path``.
        memory_limit_gb: about how much memory the data may take (buckets and batches shrink to fit).
        scratch: folder for the bucket and code files (default: beside ``dest``).

    Returns:
        The report (as the in-memory function's), the scaling and the output's rows, users and anime.

    Raises:
        UserInputError: as :func:`anime_recs.data.preprocess.preprocess`, and for invalid values in the file.
    """
    shown = shown or str(path)
    scratch = Path(scratch or dest.parent)
    scratch.mkdir(parents=True, exist_ok=True)
    rows = pq.ParquetFile(path).metadata.num_rows
    check_options(options, rows, anime)
    plan = Plan.for_rows(rows, memory_limit_gb)
    logger.info("preprocess: %s rows in batches of %s, %d bucket(s)", f"{rows:,}", f"{plan.batch_rows:,}", plan.buckets)
    # One byte per row each, on disk: the page cache holds them, not the process's own memory.
    code = np.memmap(scratch / "codes.bin", dtype=np.uint8, mode="w+", shape=(rows,))
    bucket_row = np.memmap(scratch / "buckets.bin", dtype=np.uint8, mode="w+", shape=(rows,))
    try:
        files = _split(path, shown, plan, options, anime, bucket_row, code, scratch)
        low, high, users, anime_ids = _settle(files, options, bucket_row, code)
        report = _report(code, options)
        scaling = scaling_of(low, high)
        _write(path, dest, plan, code, scaling)
        return Result(report, scaling, int(report["rows_left"].iloc[-1]), users, len(anime_ids))
    finally:
        del code, bucket_row
        for name in ("codes.bin", "buckets.bin", *(f"bucket-{b:03d}.bin" for b in range(plan.buckets))):
            (scratch / name).unlink(missing_ok=True)
