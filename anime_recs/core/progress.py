"""Progress of long work (a model fit at full scale): a bar on a terminal, nothing otherwise.

:func:`progress` opens a bar (tqdm, on stderr) that is shown only when stderr is a terminal, so logs, CI and the
output MLflow captures stay clean; :func:`stage` moves the innermost open bar to the next named stage and is a
no-op when none is open, so library code can call it whoever runs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: Set to 1 to show bars even when stderr is not a terminal (0: never show them).
PROGRESS_ENV = "ANIME_RECS_PROGRESS"

_active: ContextVar[Any] = ContextVar("anime_recs_progress", default=None)


def shown() -> bool:
    """Whether bars are drawn: ``$ANIME_RECS_PROGRESS`` when set, else whether stderr is a terminal."""
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


@contextmanager
def progress(desc: str, total: int | None = None, unit: str = "step") -> Iterator[Any]:
    """A progress bar for the work inside the ``with``; :func:`stage` calls inside it advance it."""
    from tqdm import tqdm

    try:
        columns, rows = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        columns = rows = 0
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not shown(), file=sys.stderr, mininterval=0.5,
               ncols=columns or 120, nrows=rows or 24,  # a terminal reporting no size (0 x 0 ptys) still gets the line
               bar_format="{desc}: {n_fmt} {unit}s [{elapsed}]{postfix}")
    token = _active.set(bar)
    try:
        yield bar
    finally:
        _active.reset(token)
        bar.close()


def stage(name: str) -> None:
    """Say that the work of the open bar has reached ``name`` (no-op without an open bar)."""
    bar = _active.get()
    if bar is not None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)
