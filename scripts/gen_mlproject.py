"""Write each step's MLproject from its script's argparse options, so the two never drift.

    python scripts/gen_mlproject.py            # rewrite every step's MLproject
    python scripts/gen_mlproject.py --check    # exit 1 if any MLproject is stale (tests run this)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("download", "preprocess", "neural_network", "evaluate", "similar_anime", "similar_users", "user_prefs", "user_recs", "model_recs")


def _parser_of(step: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(f"step_{step}", REPO / step / f"{step}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    captured: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        captured.append(self)
        return original(self, [], namespace)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        module.parse_args([])
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    return captured[0]


def _type_name(action: argparse.Action) -> str:
    kind = getattr(action.type, "__name__", "")
    return {"int": "int", "optional_int": "int", "float": "float", "optional_float": "float"}.get(kind, "string")


def _default(value: object) -> str:
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return f'"{str(value).lower()}"'
    if isinstance(value, (list, tuple)):
        return '"' + ",".join(map(str, value)) + '"'
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return '""' if text == "" else f'"{text}"'


def render(step: str) -> str:
    """The MLproject text of one step."""
    parser = _parser_of(step)
    actions = [a for a in parser._actions if a.dest != "help"]
    lines = [f"# Generated from {step}/{step}.py by scripts/gen_mlproject.py; edit the script, then re-run it.",
             f"name: {step}", "conda_env: conda.yml", "", "entry_points:", "  main:", "    parameters:"]
    for action in actions:
        lines.append(f"      {action.dest}: {{type: {_type_name(action)}, default: {_default(action.default)}}}")
    command = " ".join(f"--{a.dest} {{{a.dest}}}" for a in actions)
    lines.append(f'    command: "python {step}.py {command}"')
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write or check every MLproject."""
    check = "--check" in sys.argv
    stale = []
    for step in STEPS:
        if not (REPO / step / f"{step}.py").is_file():
            continue
        text = render(step)
        path = REPO / step / "MLproject"
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(step)
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"stale MLproject in: {', '.join(stale)}; run python scripts/gen_mlproject.py")


if __name__ == "__main__":
    main()
