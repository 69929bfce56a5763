"""Atomic file writes and readable terminal tables."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:  # imported where used: loading a saved model (which writes with atomic_write) needs neither
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

ROW_GROUP = 2_000_000  # rows per parquet row group of big files: large enough to read fast, small enough to stream


def atomic_write(path: Path | str, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file to ``path``.

    A crash in the middle leaves at most a hidden ``.part`` file, never a
    truncated file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_csv(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write a CSV atomically (no index)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_parquet(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write a parquet file atomically (zstd, no index)."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, compression="zstd"))


class RowGroupWriter:
    """Write tables to a parquet file in row groups of exactly ``rows`` (default ``ROW_GROUP``) rows; the last may be shorter.

    Streamed pieces of any size are buffered until a row group is full, so readers can
    stream the file a row group at a time. Use as a context manager; the file is
    complete only after it exits (pair it with :func:`atomic_write`).
    """

    def __init__(self, path: Path | str, rows: int | None = None, schema: pa.Schema | None = None) -> None:
        self.path, self.rows, self.schema = Path(path), rows or ROW_GROUP, schema
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._buffered = 0

    def write(self, piece: pa.Table | pa.RecordBatch) -> None:
        """Add rows; full row groups are written at once."""
        import pyarrow as pa

        table = piece if isinstance(piece, pa.Table) else pa.Table.from_batches([piece])
        self._pending.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(self._pending)
        cut = table.num_rows if final else table.num_rows // self.rows * self.rows
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema or table.schema, compression="zstd")
        if cut:
            self._writer.write_table(table.slice(0, cut), row_group_size=self.rows)
        rest = table.slice(cut)
        self._pending, self._buffered = [rest], rest.num_rows

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            # The rest of the rows; a file with no rows still gets its schema when one was given.
            if exc_type is None and (self._buffered or (self._writer is None and self.schema is not None)):
                self._pending = self._pending or [self.schema.empty_table()]  # type: ignore[union-attr]
                self._flush(final=True)
        finally:
            if self._writer is not None:
                self._writer.close()


def write_json(data: Any, path: Path | str) -> Path:
    """Write JSON atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str)))


def format_table(frame: pd.DataFrame, max_rows: int = 30, max_colwidth: int = 40) -> str:
    """A plain-text table for the terminal: lists joined with commas, long cells shortened with an ellipsis."""
    import pandas as pd

    shown = frame.head(max_rows).copy()
    for column in shown.columns:
        if shown[column].dtype == object:
            shown[column] = shown[column].map(lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
        if shown[column].dtype == object or pd.api.types.is_string_dtype(shown[column]):
            shown[column] = shown[column].astype(str).map(lambda s: s if len(s) <= max_colwidth else s[: max_colwidth - 1] + "…")
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    if len(frame) > max_rows:
        text += f"\n… {len(frame) - max_rows} more rows"
    return text


def print_table(frame: pd.DataFrame, title: str, max_rows: int = 30) -> None:
    """Print a titled table to stdout."""
    print(f"\n{title}\n{'-' * len(title)}\n{format_table(frame, max_rows)}\n", flush=True)
