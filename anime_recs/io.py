"""Atomic file writes and readable terminal tables."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd


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


def write_json(data: Any, path: Path | str) -> Path:
    """Write JSON atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str)))


def format_table(frame: pd.DataFrame, max_rows: int = 30, max_colwidth: int = 40) -> str:
    """A plain-text table for the terminal, long cells shortened."""
    shown = frame.head(max_rows).copy()
    for column in shown.columns:
        if shown[column].dtype == object or pd.api.types.is_string_dtype(shown[column]):
            shown[column] = shown[column].astype(str).map(lambda s: s if len(s) <= max_colwidth else s[: max_colwidth - 1] + "…")
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    if len(frame) > max_rows:
        text += f"\n… {len(frame) - max_rows} more rows"
    return text


def print_table(frame: pd.DataFrame, title: str, max_rows: int = 30) -> None:
    """Print a titled table to stdout."""
    print(f"\n{title}\n{'-' * len(title)}\n{format_table(frame, max_rows)}\n", flush=True)
