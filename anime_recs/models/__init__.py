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
from anime_recs.core.options import NETWORK_RUN_KEYS, NN_ARTS_KEYS, SHARED_MODEL_KEYS
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

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "Interactions", "RecommenderModel", "build_model", "family_options", "load_model"]


#: Keys of the ``model`` group that are not options of one family's model object.
PIPELINE_KEYS = SHARED_MODEL_KEYS | NETWORK_RUN_KEYS | NN_ARTS_KEYS


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
