"""One set of rules for what people type: ids, names and the size of what they send.

Every entry point (CLI, HTTP API, pyfunc, files) reads ids with :func:`as_int` and checks
names with :func:`check_name`, so one input means the same everywhere and none can make
unbounded work. The limits (documented in docs/reliability.md):

- a name: :data:`MAX_NAME_CHARS` characters;
- a JSON request body: :data:`MAX_JSON_BYTES`; an uploaded or read rating list: :data:`MAX_FILE_BYTES`
  (read with :func:`read_capped`, which never reads more than one byte past it).
"""

from __future__ import annotations

import re
from pathlib import Path

from anime_recs.core.errors import UserInputError

#: Longest anime name accepted (the longest MyAnimeList title has ~180 characters).
MAX_NAME_CHARS = 200
#: Largest JSON request body (20,000 ratings with long names fit).
MAX_JSON_BYTES = 4 << 20
#: Largest rating list read from a file or an upload (a MyAnimeList export of ~20,000 anime is ~10 MB).
MAX_FILE_BYTES = 20 << 20

_ASCII_INT = re.compile(r"[+-]?[0-9]{1,19}")
#: Only ASCII digits (an id, however large): ``"²"`` and ``"٣"`` are not.
ASCII_DIGITS = re.compile(r"\s*[0-9]+\s*")


def as_int(text: object) -> int | None:
    """``text`` as an int when it is one written in ASCII digits (``" 42 "``, ``"-7"``) within int64, else None.

    Not ``str.isdigit``: ``"²"`` and other Unicode digits pass it but not ``int()``.
    """
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    if not _ASCII_INT.fullmatch(stripped):
        return None
    value = int(stripped)
    return value if -(2**63) <= value < 2**63 else None


def as_id(text: object) -> int | None:
    """``text`` as an id: ASCII digits only (no sign: ``"+3"`` and ``"-1"`` are not ids) within int64, else None."""
    if not isinstance(text, str) or not ASCII_DIGITS.fullmatch(text):
        return None
    return as_int(text)


def check_name(name: str, what: str = "anime name") -> str:
    """``name`` unchanged, or a one-line error when it is longer than :data:`MAX_NAME_CHARS`."""
    if len(name) > MAX_NAME_CHARS:
        raise UserInputError(f"an {what} of {len(name):,} characters is too long; names have at most {MAX_NAME_CHARS}")
    return name


def read_capped(path: Path | str, limit: int = MAX_FILE_BYTES, what: str = "file") -> bytes:
    """The bytes of ``path``, read up to ``limit`` (one line naming the file when it is larger or unreadable)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UserInputError(f"the {what} {path} is larger than {limit >> 20} MB; give a smaller one")
    return data
