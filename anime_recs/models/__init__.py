"""Model families behind one recommender interface (:class:`~anime_recs.models.base.RecommenderModel`).

=================  ======================================================  ==========================
family             what it is                                              module
=================  ======================================================  ==========================
``hybrid``         EASE ranks, the neighbourhood blend predicts ratings    :mod:`.hybrid` (default)
``ease``           EASE on graded feedback (+ biases for ratings)          :mod:`.ease`
``neighbourhood``  biases + item/user neighbourhoods + factors, blended    :mod:`.neighbourhood`
``original``       the original project's Keras network                    :mod:`.original`
=================  ======================================================  ==========================

:func:`build_model` turns the config's ``model`` group into an unfitted model;
:func:`load_model` reads a saved one (no TensorFlow needed for any family).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anime_recs.core.errors import UserInputError
from anime_recs.models.base import Interactions, RecommenderModel, read_model_json
from anime_recs.models.ease import EASE
from anime_recs.models.hybrid import Hybrid
from anime_recs.models.neighbourhood import Neighbourhood
from anime_recs.models.original import OriginalNetwork, network_param_names

FAMILIES: dict[str, type[RecommenderModel]] = {
    "hybrid": Hybrid,
    "ease": EASE,
    "neighbourhood": Neighbourhood,
    "original": OriginalNetwork,
}
DEFAULT_FAMILY = "hybrid"

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "Interactions", "RecommenderModel", "build_model", "check_options_apply", "family_options",
           "load_model", "network_only_keys"]


#: Keys of the ``model`` group every family uses (the data split, the published artifacts' names).
SHARED_KEYS = frozenset({"family", "test_size", "holdout_fraction", "model_artifact", "embeddings_artifact"})
#: Keys of the ``model`` group only the original network uses (its training run, its extra artifacts).
NETWORK_RUN_KEYS = frozenset({"resume", "TPU_init", "TPU_address", "multi_worker", "stream_above_rows", "weights_artifact",
                              "history_csv", "loss_plot", "val_fraction", "seed"})
#: The ``nn_arts`` group travels with the model group to the neural_network step (artifact types and references).
NN_ARTS_KEYS = frozenset({"model_type", "weights_type", "history_type", "figure_type", "embeddings_type", "main_embeddings"})
#: Keys of the ``model`` group that are not options of one family's model object.
PIPELINE_KEYS = SHARED_KEYS | NETWORK_RUN_KEYS | NN_ARTS_KEYS


def network_only_keys() -> frozenset[str]:
    """Keys of the ``model`` group that only ``model=original`` uses: its run keys and the network's parameters."""
    return NETWORK_RUN_KEYS | frozenset(network_param_names())


def check_options_apply(family: str, overridden: list[str]) -> None:
    """Refuse, in one line, a ``model.KEY`` set on the command line that ``family`` would silently ignore.

    Args:
        family: the chosen family.
        overridden: the ``model`` keys the user set (``"epochs"``, ``"ranking.l2_per_count"``).

    Raises:
        UserInputError: naming the key and the family that uses it.
    """
    if family == "original":
        return
    for key in overridden:
        top = key.split(".")[0]
        if top in network_only_keys() and top not in SHARED_KEYS and not family_owns(family, top):
            raise UserInputError(f"model.{key} applies only to the original network (model=original); the family {family!r} "
                                 f"has no network and would ignore it: drop model.{key} or add model=original")


def family_owns(family: str, key: str) -> bool:
    if family == "hybrid":
        return key in ("ranking", "rating")
    return key in (FAMILIES[family].defaults or {})  # type: ignore[attr-defined]


def family_options(family: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``family`` found in a ``model`` config group (pipeline keys such as ``test_size`` are left out).

    The network's option names are tolerated for every family (``data=original`` sets
    them); any other unknown key is a typo and a one-line error.
    """
    network = set(network_param_names())
    if family == "hybrid":
        own: set[str] = {"ranking", "rating"}
    elif family == "original":
        own = network
    else:
        own = set(FAMILIES[family].defaults)  # type: ignore[attr-defined]
    unknown = sorted(k for k in config if k not in own | network | PIPELINE_KEYS)
    if unknown:
        raise UserInputError(f"unknown option(s) {unknown} for model family {family!r}; choose from: {', '.join(sorted(own))}")
    if family == "hybrid":
        return {"ranking": dict(config.get("ranking") or {}), "rating": dict(config.get("rating") or {})}
    return {k: v for k, v in config.items() if k in own}


def build_model(config: Mapping[str, Any], **extra: Any) -> RecommenderModel:
    """An unfitted model from a ``model`` config group (``family`` names the family).

    Raises:
        UserInputError: an unknown family, naming the valid ones.
    """
    family = str(config.get("family", DEFAULT_FAMILY))
    if family not in FAMILIES:
        raise UserInputError(f"unknown model family {family!r}; choose from: {', '.join(FAMILIES)} (e.g. model=hybrid)")
    return FAMILIES[family](**family_options(family, config), **extra)


def load_model(folder: Path, mmap: bool = False) -> RecommenderModel:
    """Load a model saved by :meth:`RecommenderModel.save`, whatever its family.

    ``mmap``: map its dense arrays read-only from the files instead of reading them (processes serving the same
    model share those pages; the files must not change, as published artifacts never do).
    """
    meta = read_model_json(Path(folder))
    family = meta["family"]
    if family not in FAMILIES:
        raise UserInputError(f"{folder} holds a model of unknown family {family!r}; upgrade anime_recs or retrain")
    return FAMILIES[family]._load(Path(folder), meta, mmap)
