"""Every key of config/config.yaml means something: a step, the pipeline or the chosen family uses it, or setting it
is a one-line error naming the family that would use it (never a silent no-op)."""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.core.options import (NETWORK_RUN_KEYS, NN_ARTS_KEYS, PIPELINE_READS, SHARED_MODEL_KEYS, STEP_OPTIONS,
                                     default_config, family_keys, lookup, network_only_keys)
from anime_recs.models import FAMILIES, build_model
from anime_recs.models.network.architecture import ModelParams
from anime_recs.pipeline.run import check_family_options
from tests.test_hydra import composed

#: Groups that are Hydra's own or the model's (walked per family below).
NOT_STEP_GROUPS = ("defaults", "hydra", "model", "nn_arts")
STEP_SOURCE = inspect.getsource(importlib.import_module("anime_recs.pipeline.steps.neural_network"))


def _leaves(section: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in section.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _changed(value: Any) -> Any:
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if isinstance(value, list):
        return [*value, "Drama"]
    return f"{value or 'x'}_changed"


def _set(cfg: dict, dotted: str, value: Any) -> dict:
    out = copy.deepcopy(cfg)
    *path, last = dotted.split(".")
    node = out
    for part in path:
        node = node[part]
    node[last] = value
    return out


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_step_and_pipeline_key_is_read() -> None:
    cfg = default_config()
    options = [option for step in STEP_OPTIONS.values() for option in step]
    by_key = {option.key for option in options if option.key}
    derived = [option for option in options if option.derive is not None]
    unread = []
    for group, section in cfg.items():
        if group in NOT_STEP_GROUPS:
            continue
        for name in _leaves(section):
            key = f"{group}.{name}"
            if key in by_key:
                continue  # a step's parameter (tests/test_options.py: every step's parser and MLproject carry it)
            if key in PIPELINE_READS:
                source = inspect.getsource(importlib.import_module(PIPELINE_READS[key]))
                assert f'"{name}"' in source or f"'{name}'" in source, f"{key}: {PIPELINE_READS[key]} does not read it"
                continue
            moved = _set(cfg, key, _changed(lookup(cfg, key)))
            if any(option.derive(moved) != option.derive(cfg) for option in derived):
                continue  # part of a derived step parameter (e.g. data.local_dir -> raw_dir)
            unread.append(key)
    assert unread == [], f"config keys nothing reads (remove them, or make them mean something): {unread}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_model_key_is_used_by_the_family_or_refused_in_one_line(family: str) -> None:
    cfg = composed(f"model={family}")
    model_cfg = cfg["model"]
    network_params = set(ModelParams.__dataclass_fields__)
    for key in _leaves(model_cfg):
        top = key.split(".")[0]
        if top in SHARED_MODEL_KEYS:
            assert f'"{top}"' in STEP_SOURCE, f"model.{key}: the neural_network step does not read it"
            continue
        if top in network_only_keys() and family != "original" and top not in family_keys(family):
            with pytest.raises(UserInputError, match=rf"^model\.{key} applies only to the original network \(model=original\)"):
                check_family_options(cfg, [f"model.{key}={_changed(_get(model_cfg, key))}"])
            continue
        if family == "original" and top in NETWORK_RUN_KEYS:
            assert f'"{top}"' in STEP_SOURCE, f"model.{key}: the neural_network step does not read it"
            continue
        if family == "original":
            assert top in network_params, f"model.{key} is not a parameter of the network"
            continue
        value = _changed(_get(model_cfg, key))
        model = build_model(_set(model_cfg, key, value))
        assert _get(model.params, key) == value, f"model.{key} does not reach the {family} model"
    for key in _leaves(cfg["nn_arts"]):
        assert key in NN_ARTS_KEYS and f'"{key}"' in STEP_SOURCE or key == "main_embeddings", f"nn_arts.{key} is read by nothing"


def test_a_network_option_set_for_another_family_is_one_line_and_the_network_takes_it() -> None:
    cfg = composed()
    with pytest.raises(UserInputError, match=r"^model\.epochs applies only to the original network"):
        check_family_options(cfg, ["model.epochs=3"])
    check_family_options(cfg, ["model.ranking.l2_per_count=40", "model.test_size=0.2"])  # the hybrid's own and shared keys
    check_family_options(composed("model=original"), ["model.epochs=3", "model.TPU_init=true"])
