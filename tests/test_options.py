"""Each option is declared once (anime_recs/core/options.py); every copy is generated from it and checked here."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from anime_recs.core.config import str_to_list
from anime_recs.core.errors import UserInputError
from anime_recs.core.options import (
    CONFIG_FILE,
    STEP_OPTIONS,
    STEPS,
    answer_defaults,
    config_rules,
    default_config,
    lookup,
    step_values,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import gen_mlproject  # noqa: E402


def _script(step: str):
    spec = importlib.util.spec_from_file_location(f"script_{step}", REPO / step / f"{step}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_step_list_is_the_config_default_and_has_a_folder_per_step():
    assert list(STEPS) == default_config()["main"]["execute_steps"]
    assert all((REPO / step / "MLproject").is_file() for step in STEPS)


@pytest.mark.parametrize("step", STEPS)
def test_each_script_parses_exactly_the_declared_options_with_config_defaults(step):
    args = vars(_script(step).parse_args([]))
    expected = step_values(step, default_config())
    assert list(args) == [option.name for option in STEP_OPTIONS[step]]
    for option in STEP_OPTIONS[step]:
        want = expected[option.name]
        if option.kind == "list":
            want = str_to_list(want)
        assert args[option.name] == want, (step, option.name)


@pytest.mark.parametrize("step", STEPS)
def test_mlproject_parameters_and_command_are_generated_from_the_declaration(step):
    text = (REPO / step / "MLproject").read_text()
    assert text == gen_mlproject.render(step)
    parameters = yaml.safe_load(text)["entry_points"]["main"]["parameters"]
    assert list(parameters) == [option.name for option in STEP_OPTIONS[step]]
    command = yaml.safe_load(text)["entry_points"]["main"]["command"]
    assert re.findall(r"--(\w+) \{\1\}", command) == list(parameters)


def test_every_declared_key_exists_in_config_yaml_and_its_default_passes_its_rule():
    cfg = default_config()
    for options in STEP_OPTIONS.values():
        for option in options:
            if option.key is not None:
                lookup(cfg, option.key)  # KeyError: the declaration names a key config.yaml lacks
    for key in config_rules():
        group, _, name = key.partition(".")
        if group != "model":  # the model keys live in config/model/<family>.yaml
            assert name in cfg[group], key
    validate_config(cfg)


def test_validation_rules_come_from_the_declaration():
    rules = config_rules()
    declared = {o.key: o.rule for options in STEP_OPTIONS.values() for o in options if o.rule is not None}
    assert declared and all(rules[key] == rule for key, rule in declared.items())
    bad = {**default_config(), "users": {**default_config()["users"], "favorite_percentile": 1.5}}
    with pytest.raises(UserInputError, match="users.favorite_percentile must be a number >= 0 and <= 1"):
        validate_config(bad)


def test_front_end_defaults_are_the_step_options(monkeypatch):
    from anime_recs.cli import main as cli
    from anime_recs.serve.service import Service

    cfg = default_config()
    defaults = answer_defaults()
    assert defaults["favorite_percentile"] == cfg["users"]["favorite_percentile"]
    assert defaults["recommend"] == cfg["model_recs"]["model_num_recs"]
    assert Service.preferences.__defaults__ == (cfg["users"]["favorite_percentile"],)
    parser = cli.build_parser()
    assert parser.parse_args(["similar", "x"]).n == cfg["similarity"]["a_query_number"]
    assert parser.parse_args(["users", "--user", "1"]).n == cfg["similarity"]["id_query_number"]


def test_config_file_is_the_one_hydra_reads():
    assert CONFIG_FILE == REPO / "config" / "config.yaml"


# Regression: a step option's default stood in config.yaml, two MLproject files, serve/service.py, serve/app.py and
# recommend/recommender.py; product code names an artifact-name default at most once outside config.yaml.
def test_artifact_name_defaults_are_not_repeated_in_product_code():
    product = [*REPO.joinpath("anime_recs").rglob("*.py"), *(REPO / s / f"{s}.py" for s in STEPS), REPO / "main.py"]
    texts = [p.read_text() for p in product]
    cfg = default_config()
    values = [v for step in STEPS for v in step_values(step, cfg).values()]
    names = {v for v in values if isinstance(v, str) and re.search(r"\.(csv|parquet|png|keras|h5)(:|$)|:latest$", v)}
    assert {"similar_anime.csv", "preprocessed_stats.parquet:latest", "recs_favorite_genres.png"} <= names
    for name in names:
        count = sum(t.count(f'"{name}"') + t.count(f"'{name}'") for t in texts)
        assert count <= 1, f"{name!r} is written {count} times in product code; take it from config.yaml"
    percentile = repr(cfg["users"]["favorite_percentile"])
    assert sum(len(re.findall(rf"percentile[^=\n]*=\s*{re.escape(percentile)}\b", t)) for t in texts) == 0
