"""Errors that end a step with one readable line instead of a traceback, and how values appear in them."""

from __future__ import annotations

import re


class UserInputError(ValueError):
    """Bad input from the user (config, data file, query): says what and how to fix it.

    Step entry points catch it, print ``error: <message>`` on one line and exit 2.
    """


class DataValidationError(UserInputError):
    """A data file is missing columns, has wrong types or values out of range."""


class AlreadyReported(UserInputError):
    """A user error a step process has shown already, in its own one line: its pipeline exits without repeating it."""


class ArtifactError(UserInputError):
    """An artifact name, version or type that does not exist or does not match."""


def plain(value: object, limit: int = 60) -> str:
    """A value as a user wrote it: ``11`` not ``np.int8(11)``, strings quoted, long values cut.

    Args:
        value: what to show (a numpy scalar, a number, a string, ...).
        limit: at most this many characters of the value are shown.
    """
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        value = item()  # numpy scalar -> Python scalar
    return cut(repr(value) if isinstance(value, str) else str(value), limit)


def cut(text: str, limit: int = 60) -> str:
    """``text`` on one line, at most about ``limit`` characters (the full length is said when cut)."""
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


_LONG_QUOTED = re.compile(r"'([^'\n]{80,})'")


def one_line(message: object, limit: int = 2000) -> str:
    """An error message fit for one terminal line: newlines folded, long quoted values and the whole cut."""
    text = " ".join(str(message).split())
    text = _LONG_QUOTED.sub(lambda m: plain(m.group(1)), text)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
