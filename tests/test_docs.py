"""The README and docs/ name only what exists: links, anchors, command-line flags and config keys."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from anime_recs.core.options import STEP_OPTIONS, STEPS, default_config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "model_card.md", *sorted((REPO / "docs").glob("*.md"))]
GROUPS = ("main", "data", "model", "nn_arts", "similarity", "users", "model_recs", "evaluation")
FILE_SUFFIXES = ("py", "md", "csv", "json", "yaml", "yml", "parquet", "png", "db", "npy", "npz", "keras", "h5", "txt", "xml")
#: Tokens that look like config keys but name something else (Keras' own method).
NOT_KEYS = {"model.fit"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def test_the_readme_is_a_guide_of_at_most_300_lines():
    assert len((REPO / "README.md").read_text().splitlines()) <= 300
    assert len(PAGES) > 8  # the reference moved to docs/


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_exists(page):
    text = page.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links or page.name == "options.md"
    for link in links:
        if re.match(r"[a-z]+://", link) or link.startswith("mailto:"):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: link {link!r} points at nothing"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{page.name}: no heading #{anchor} in {target.name}"


def _model_keys() -> set[str]:
    keys = {f"model.{k}" for k in default_config()["model"]}
    for group_file in (REPO / "config" / "model").glob("*.yaml"):
        def walk(node: dict, prefix: str) -> None:
            for key, value in node.items():
                keys.add(f"{prefix}.{key}")
                if isinstance(value, dict):
                    walk(value, f"{prefix}.{key}")
        walk(yaml.safe_load(group_file.read_text()) or {}, "model")
    return keys


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_key_named_exists(page):
    cfg = default_config()
    known = {f"{group}.{key}" for group in GROUPS if group != "model" for key in cfg[group]} | _model_keys()
    pattern = rf"\b(?:{'|'.join(GROUPS)})\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    for token in set(re.findall(pattern, page.read_text())):
        if token.rsplit(".", 1)[-1] in FILE_SUFFIXES or token in NOT_KEYS:
            continue
        assert token in known, f"{page.name} names the config key {token}, which config/ does not have"


def _commands(text: str) -> list[list[str]]:
    """Every command line in bash blocks and in inline code, as tokens (continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    commands = []
    for line in lines:
        line = line.split(" #", 1)[0]
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        commands.append(tokens)
    return commands


def _cli_flags() -> dict[str, set[str]]:
    """``anime-recs`` sub-command -> its flags (nested sub-commands flattened)."""
    import argparse

    from anime_recs.cli.main import build_parser

    flags: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(child, sub if name == "" else name)
            else:
                flags.setdefault(name, set()).update(s for s in action.option_strings)

    walk(build_parser(), "")
    return flags


def _script_flags(script: Path) -> set[str]:
    text = script.read_text()
    flags = set(re.findall(r"add_argument\(\s*\"(-{1,2}[\w-]+)\"", text)) | {"-h", "--help"}
    step = script.stem
    if step in STEPS:
        flags |= {f"--{option.name}" for option in STEP_OPTIONS[step]}
    return flags


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_flag_named_exists(page):
    cli = _cli_flags()
    for tokens in _commands(page.read_text()):
        if not tokens:
            continue
        if tokens[0] == "anime-recs" and len(tokens) > 1:
            sub = next((t for t in tokens[1:] if not t.startswith("-") and t in cli), "")
            allowed = cli.get(sub, set()) | cli[""]
            for flag in (t.split("=", 1)[0] for t in tokens[1:] if t.startswith("-")):
                assert flag in allowed, f"{page.name}: anime-recs {sub} has no option {flag}"
        elif tokens[0] == "python" and len(tokens) > 1 and tokens[1].endswith(".py") and tokens[1] != "main.py":
            script = REPO / tokens[1]
            if not script.is_file():
                continue  # e.g. a path under the user's own folders
            allowed = _script_flags(script)
            for flag in (t.split("=", 1)[0] for t in tokens[2:] if t.startswith("--")):
                assert flag in allowed, f"{page.name}: {tokens[1]} has no option {flag}"
        elif tokens[:2] == ["mlflow", "run"] and len(tokens) > 2 and tokens[2] in STEPS:
            names = {option.name for option in STEP_OPTIONS[tokens[2]]}
            for i, token in enumerate(tokens):
                if token == "-P" and i + 1 < len(tokens):
                    assert tokens[i + 1].split("=", 1)[0] in names, f"{page.name}: step {tokens[2]} has no -P {tokens[i + 1]}"


def test_the_checks_catch_a_wrong_flag_and_key(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("```bash\nanime-recs similar x --no-such-flag\n```\n`data.no_such_key`\n[x](missing.md)\n")
    with pytest.raises(AssertionError, match="no option --no-such-flag"):
        test_every_flag_named_exists(page)
    with pytest.raises(AssertionError, match="data.no_such_key"):
        test_every_config_key_named_exists(page)
    with pytest.raises(AssertionError, match="points at nothing"):
        test_every_relative_link_and_anchor_exists(page)
