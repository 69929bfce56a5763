"""Finding the line of a CSV file that Arrow's streaming reader rejected.

Arrow reports *what* was wrong with a block ("CSV conversion error to int64: invalid
value 'x'", "Expected 5 columns, got 4") but not *where*. A user with a 2 GB file needs
the line number, so after a failure we find it: skip the lines already converted
(counting newlines a chunk at a time), then look at the next block of text with numpy
and Arrow, column by column. Only the error path pays for this.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from anime_recs.core.errors import plain

logger = logging.getLogger(__name__)

_CHUNK = 64 << 20
_WHOLE_NUMBER = r"^[+-]?[0-9]{1,18}$"  # what Arrow's int64 conversion accepts (beyond 18 digits may overflow)


@dataclass(frozen=True)
class BadLine:
    """A rejected line: its 1-based number in the file, its text and what is wrong with it."""

    number: int
    text: str
    problem: str


def _offset_after_lines(path: Path, lines: int) -> int:
    """Byte offset just after the ``lines``-th newline (0 for ``lines == 0``); -1 when the file has fewer."""
    if lines == 0:
        return 0
    seen = offset = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            found = chunk.count(b"\n")
            if seen + found >= lines:
                newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == ord("\n"))
                return offset + int(newlines[lines - seen - 1]) + 1
            seen += found
            offset += len(chunk)
    return -1


def find_bad_line(path: Path, good_rows: int, header: list[str], columns: list[str], span: int) -> BadLine | None:
    """The first line after the header and ``good_rows`` data rows that has the wrong field count or a non-integer.

    Args:
        path: the CSV file (one line per row, no quoted newlines: a stats file holds numbers only).
        good_rows: data rows the reader converted before it failed.
        header: the file's column names.
        columns: the columns that must hold whole numbers (empty cells are allowed).
        span: bytes to look at after those rows (the reader's block size is enough; twice is safe).

    Returns:
        The bad line, or None when these checks find nothing (the caller then reports Arrow's message).
    """
    start = _offset_after_lines(path, 1 + good_rows)
    if start < 0:
        return None
    with open(path, "rb") as handle:
        handle.seek(start)
        text = handle.read(span)
    if len(text) == span:  # drop the last, possibly cut, line
        text = text[: text.rfind(b"\n") + 1]
    if not text:
        return None
    buffer = np.frombuffer(text, dtype=np.uint8)
    ends = np.flatnonzero(buffer == ord("\n"))
    if len(ends) == 0 or ends[-1] != len(buffer) - 1:
        ends = np.append(ends, len(buffer))
    commas = np.concatenate([[0], np.cumsum(buffer == ord(","))])
    per_line = commas[ends] - commas[np.concatenate([[0], ends[:-1] + 1])]
    blank = (ends - np.concatenate([[0], ends[:-1] + 1])) == 0  # Arrow skips empty lines
    ragged = np.flatnonzero((per_line != len(header) - 1) & ~blank)

    def line(index: int) -> str:
        begin = 0 if index == 0 else int(ends[index - 1]) + 1
        return text[begin:int(ends[index])].decode("utf-8", errors="replace").rstrip("\r")

    bad_index, problem = (int(ragged[0]), f"has {int(per_line[ragged[0]]) + 1} fields where the header has {len(header)}") \
        if len(ragged) else (None, "")
    limit = len(text) if bad_index is None else (0 if bad_index == 0 else int(ends[bad_index - 1]) + 1)
    if limit:
        table = pacsv.read_csv(io.BytesIO(text[:limit]), read_options=pacsv.ReadOptions(column_names=header),
                               convert_options=pacsv.ConvertOptions(include_columns=columns,
                                                                    column_types={c: pa.string() for c in columns}))
        rows = np.flatnonzero(~blank)  # table row i is the i-th non-blank line
        for column in columns:
            values = table.column(column)
            wrong = pc.invert(pc.or_kleene(pc.equal(values, ""), pc.match_substring_regex(values, _WHOLE_NUMBER)))
            first = pc.index(pc.fill_null(wrong, False), True).as_py()
            if first >= 0 and (bad_index is None or rows[first] < bad_index):
                bad_index, problem = int(rows[first]), f"column {column} holds {plain(values[first].as_py())} where whole numbers are expected"
    if bad_index is None:
        return None
    number = 2 + good_rows + bad_index  # the header, the converted rows, then lines of this span (blank ones too)
    return BadLine(number, line(bad_index), problem)
