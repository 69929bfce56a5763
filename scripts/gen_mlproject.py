"""Write each step's MLproject and conda.yml from its script, so neither drifts from the code.

    python scripts/gen_mlproject.py            # rewrite every step's MLproject and conda.yml (and the root conda.yml)
    python scripts/gen_mlproject.py --check    # exit 1 if any of them is stale (tests run this)

The MLproject parameters come from the step's options as declared in ``anime_recs/core/options.py``
(the same declaration builds the step script's argparse parser), their defaults from ``config/config.yaml``. The conda.yml lists
the distributions whose modules the script can import (found by ``modulefinder``
through the ``anime_recs`` modules it reaches, lazy imports included), pinned as in
requirements.txt. The package itself is not installed there: the MLproject command
puts the checkout on ``PYTHONPATH``, so one cached environment (``--env-manager uv``)
serves every version of the code and ``mlflow run <git uri> -v <tag>`` runs that tag's code.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import modulefinder
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from anime_recs.core.options import STEPS, step_parser
from anime_recs.pipeline.tracking import SYSTEM_METRICS_STEPS

REPO = Path(__file__).resolve().parents[1]
#: Python of every step environment (conda.yml ``python=``); uv must find an installed one (see README).
PYTHON = "3.11"
#: Pinned with every environment: mlflow, wandb and tensorflow all build on it, and requirements.txt pins it so they agree.
ALWAYS = ("protobuf",)


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
    parser = step_parser(step, step)
    actions = [a for a in parser._actions if a.dest != "help"]
    lines = ["# Generated from anime_recs/core/options.py and config/config.yaml by scripts/gen_mlproject.py; edit those, then re-run it.",
             f"name: {step}", "conda_env: conda.yml",
             "# The command puts this checkout's anime_recs on PYTHONPATH: the step environment holds only third-party packages.", "", "entry_points:", "  main:", "    parameters:"]
    for action in actions:
        lines.append(f"      {action.dest}: {{type: {_type_name(action)}, default: {_default(action.default)}}}")
    command = " ".join(f"--{a.dest} {{{a.dest}}}" for a in actions)
    lines.append(f'    command: "PYTHONPATH=..:$PYTHONPATH python {step}.py {command}"')
    return "\n".join(lines) + "\n"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    """requirements.txt as normalised distribution name -> its whole line (markers kept)."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pins[_normalise(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0])] = line
    return pins


@functools.cache
def _top_levels() -> Mapping[str, list[str]]:
    """Top-level module -> the distributions providing it (reading every installed RECORD: once)."""
    return importlib.metadata.packages_distributions()


class _ImportGraph(modulefinder.ModuleFinder):
    """A ModuleFinder that remembers which module imports which, so every script shares one crawl of ``anime_recs``.

    Each import statement is scanned once per module; the names it tries (found, excluded or
    missing) become edges of its module, and a script reaches what its ``__main__`` reaches.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.edges: dict[str, set[str]] = {}
        self._callers: list[str] = []

    def _safe_import_hook(self, name, caller, fromlist, level=-1):  # type: ignore[no-untyped-def]
        self._callers.append(caller.__name__ if caller is not None else "__main__")
        try:
            return super()._safe_import_hook(name, caller, fromlist, level)
        finally:
            self._callers.pop()

    def import_module(self, partname, fqname, parent):  # type: ignore[no-untyped-def]
        if self._callers:
            self.edges.setdefault(self._callers[-1], set()).add(fqname)
        return super().import_module(partname, fqname, parent)

    def reached_by(self, script: Path) -> set[str]:
        """Every module name ``script`` can import, directly or through modules already crawled."""
        self.edges.pop("__main__", None)
        self.run_script(str(script))
        seen, todo = set(), ["__main__"]
        while todo:
            for name in self.edges.get(todo.pop(), ()):
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
        return seen


@functools.cache
def _import_graph() -> _ImportGraph:
    top_levels = _top_levels()
    excludes = [m for m in [*top_levels, *sys.stdlib_module_names] if m != "anime_recs"]
    return _ImportGraph(path=[str(REPO), *sys.path], excludes=excludes)


def imported_distributions(script: Path, pins: dict[str, str]) -> list[str]:
    """The pinned distributions whose modules ``script`` can import, directly or through ``anime_recs``.

    Only our own modules are crawled: for installed packages and the standard library the
    top-level name is all that matters (an unpinned one, e.g. scipy, comes with a pinned one).
    """
    top_levels = _top_levels()
    reached = {name.split(".")[0] for name in _import_graph().reached_by(script)}
    return sorted({_normalise(d) for module in reached for d in top_levels.get(module, []) if _normalise(d) in pins})


def render_env(name: str, script: Path, pins: dict[str, str], extra: tuple[str, ...] = ()) -> str:
    """The conda.yml text of the environment that runs ``script``."""
    needed = sorted(set(imported_distributions(script, pins)) | set(ALWAYS) | set(extra))
    lines = [f"# Generated from the imports of {script.relative_to(REPO)} and the pins in requirements.txt by",
             "# scripts/gen_mlproject.py; edit those, then re-run it. Used by --env-manager uv / virtualenv / conda;",
             "# anime_recs itself comes from the checkout (PYTHONPATH in the MLproject command).",
             f"name: {name}", "channels:", "  - conda-forge", "dependencies:", f"  - python={PYTHON}", "  - pip", "  - pip:"]
    lines += [f"      - {pins[dist]}" for dist in needed]
    return "\n".join(lines) + "\n"


def render_options() -> str:
    """docs/options.md: every step option with its config key, type, default and help."""
    from anime_recs.core.options import STEP_OPTIONS, default_config, step_values

    lines = ["# Step options", "",
             "Generated from `anime_recs/core/options.py` (the declaration) and `config/config.yaml` (the values) by",
             "`scripts/gen_mlproject.py`; do not edit. Override a config key the Hydra way (`python main.py "
             "similarity.a_query_number=20`,",
             "`mlflow run . -P hydra_options=\"...\"`), or pass the option to one step run on its own",
             "(`mlflow run similar_anime -P a_query_number=20`, `python similar_anime/similar_anime.py --a_query_number 20`).",
             "The model options (`model.*`, `config/model/<family>.yaml`) travel to `neural_network` and `evaluate` as one",
             "file; see [models](models.md).", ""]
    for step, options in STEP_OPTIONS.items():
        values = step_values(step, default_config())
        lines += [f"## {step}", "", "| option | config key | type | default | what it does |", "|---|---|---|---|---|"]
        for option in options:
            key = f"`{option.key}`" if option.key else ("derived" if option.derive else "-")
            default = _default(values[option.name]).strip('"')
            help_text = option.help.replace("|", "\\|")
            shown = f"`{default}`" if default else "(empty)"
            lines.append(f"| `--{option.name}` | {key} | {option.kind} | {shown} | {help_text} |")
        lines.append("")
    lines.append("[Back to the README](../README.md)")
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    """Every generated file and its text: each step's MLproject and conda.yml, and the root conda.yml."""
    pins = _pins()
    files = {}
    for step in STEPS:
        script = REPO / step / f"{step}.py"
        if script.is_file():
            files[REPO / step / "MLproject"] = render(step)
            # MLflow's system metrics import psutil themselves, inside mlflow.start_run.
            extra = ("psutil",) if step in SYSTEM_METRICS_STEPS else ()
            files[REPO / step / "conda.yml"] = render_env(f"anime_recs_{step}", script, pins, extra)
    # main.py builds the step environments with uv when main.env_manager=uv.
    files[REPO / "conda.yml"] = render_env("anime_recommendations", REPO / "main.py", pins, extra=("uv",))
    files[REPO / "docs" / "options.md"] = render_options()
    return files


def main() -> None:
    """Write or check every generated file."""
    check = "--check" in sys.argv
    stale = []
    for path, text in expected_files().items():
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"stale generated file(s): {', '.join(stale)}; run python scripts/gen_mlproject.py")


if __name__ == "__main__":
    main()
