"""Small typed helpers shared by every entry point: booleans, lists, logging, and the config schema.

:class:`Rule` types and bounds one config value; the rules themselves are declared with the options
(:func:`anime_recs.core.options.config_rules`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import logging
import os
import sys
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TRUE_WORDS = {"true", "1", "yes", "y", "on"}
FALSE_WORDS = {"false", "0", "no", "n", "off"}
# Words that mean "no value" for optional list/str options coming through MLflow.
NONE_WORDS = {"", "none", "null", "[]", "~"}


def str_to_bool(value: str | bool) -> bool:
    """Parse a boolean the one way every step does (``true/false/1/0/yes/no``).

    Raises:
        argparse.ArgumentTypeError: for anything else, so argparse prints a clear usage error.
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def str_to_list(value: str | Iterable[str] | None) -> list[str]:
    """Parse a list option: ``"Action,Comedy"``, ``"['Action', 'Comedy']"`` or a real list.

    ``None``, ``null``, ``[]`` and empty strings give an empty list; ``None`` items
    (the original wrote ``["Action", "Comedy", None]``) are dropped.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in NONE_WORDS:
            return []
        text = text.strip("[]()")
        items = [part.strip().strip("'\"").strip() for part in text.split(",")]
    else:
        items = [str(part).strip() for part in value if part is not None]
    return [item for item in items if item and item.lower() not in NONE_WORDS]


def optional_str(value: str | None) -> str | None:
    """Map ``None``/``null``/empty to ``None``; keep other strings."""
    if value is None or str(value).strip().lower() in NONE_WORDS:
        return None
    return str(value)


def optional_int(value: str | int | None) -> int | None:
    """Parse an optional whole number (``null``/empty -> ``None``; ``1167.0`` -> 1167).

    Raises:
        argparse.ArgumentTypeError: for a fraction such as ``1167.5`` (never silently cut to 1167) or a non-number.
    """
    text = optional_str(None if value is None else str(value))
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or null, got {value!r}") from None
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number or null, got {value!r} (ids and counts have no fractions)")
    return int(number)


def optional_float(value: str | float | None) -> float | None:
    """Parse an optional float (``null``/empty -> ``None``)."""
    text = optional_str(None if value is None else str(value))
    if text is None:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number or null, got {value!r}") from exc


def make_parser(description: str) -> argparse.ArgumentParser:
    """An argparse parser that shows every option's default in ``--help``."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def setup_logging(level: str | None = None) -> None:
    """Configure logging for an entry point (library modules never do this)."""
    logging.basicConfig(
        level=(level or os.environ.get("ANIME_RECS_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # Third-party chatter would bury our progress lines.
    for noisy in ("urllib3", "alembic", "mlflow", "wandb", "matplotlib", "PIL", "absl", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_overrides(text: str | None) -> dict[str, object]:
    """Parse ``"epochs=3 batch_size=512"`` (YAML values) into a dict."""
    import yaml

    result: dict[str, object] = {}
    for item in (text or "").replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"override {item!r} is not KEY=VALUE")
        result[key.strip()] = yaml.safe_load(value)
    return result


def load_group_config(path: str, groups: tuple[str, ...], overrides: str | None = None) -> dict[str, object]:
    """Read config groups from a YAML/JSON file (e.g. ``config/config.yaml``) merged in order, plus overrides.

    A file without the group keys is taken as the group itself (what main.py writes).
    Reading ``config/config.yaml`` itself, the ``model`` group is composed as Hydra does:
    its shared keys, then ``config/model/<family>.yaml`` for the family in its defaults
    list (or ``family=...`` among the overrides). Dotted override keys
    (``ranking.l2_per_count=40``) set nested options.
    """
    import yaml

    from anime_recs.core.errors import UserInputError

    def read(file: Path) -> dict:
        try:
            with open(file, encoding="utf-8") as handle:
                return yaml.safe_load(handle) or {}
        except FileNotFoundError:
            raise UserInputError(f"config file {file} does not exist; pass --model_config PATH") from None
        except yaml.YAMLError as exc:
            raise UserInputError(f"config file {file} is not valid YAML/JSON ({str(exc).splitlines()[0]})") from None

    data = read(Path(path))
    extra = parse_overrides(overrides)
    merged: dict[str, object] = {}
    if any(group in data for group in groups):
        for group in groups:
            merged.update(data.get(group) or {})
            if group == "model" and "family" not in (data.get("model") or {}):
                chosen = [d["model"] for d in data.get("defaults", []) if isinstance(d, dict) and "model" in d]
                family = str(extra.get("family") or (chosen[0] if chosen else ""))
                group_file = Path(path).parent / "model" / f"{family}.yaml"
                if family and not group_file.is_file():
                    raise UserInputError(f"no model family {family!r}: {group_file} does not exist")
                if family:
                    merged.update(read(group_file))
    else:
        merged.update(data)
    for key, value in extra.items():
        *parents, leaf = key.split(".")
        node = merged
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
            if not isinstance(node, dict):
                raise UserInputError(f"override {key}: {part} is not an option group")
        node[leaf] = value
    return merged


@dataclass(frozen=True)
class Rule:
    """The type and bounds of one config value.

    ``kind`` is ``int`` (whole numbers), ``number``, ``bool`` or ``size`` (a fraction
    in (0, 1) or a whole number of rows >= 1, like ``model.test_size``).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    optional: bool = False
    open_low: bool = False
    open_high: bool = False

    def expected(self) -> str:
        """What the rule accepts, in words."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "size":
            text = "a fraction between 0 and 1 (exclusive) or a whole number of rows >= 1"
        else:
            text = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None:
                text += f" {'>' if self.open_low else '>='} {self.low:g}"
            if self.high is not None:
                text += f"{' and' if self.low is not None else ''} {'<' if self.open_high else '<='} {self.high:g}"
        return text + (" or null" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        """True when ``value`` (as Hydra parsed it) satisfies the rule."""
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind == "size":
            return 0 < value < 1 or (float(value).is_integer() and value >= 1)
        if self.kind == "int" and not float(value).is_integer():
            return False
        below = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        above = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        return not (below or above)
