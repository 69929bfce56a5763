"""The one way to open a trained model version with everything it answers with.

A model version is the ``anime_nn_embeddings:vN`` artifact (any family's saved folder) plus the
data it was trained on: the preprocessed ratings, the anime table and the synopses.
:func:`open_model_version` asks an artifact source for each of them once and returns a
:class:`ModelVersion`; :meth:`ModelVersion.from_files` builds the same object from files on disk
(what the MLflow pyfunc model holds). The pipeline's recommender steps (through their
:class:`~anime_recs.pipeline.tracking.StepContext`), ``anime-recs`` and ``anime-recs serve``
(through an :class:`~anime_recs.store.artifacts.ArtifactStore`) and the pyfunc model all open
models here; no other module reads these artifacts to answer a question.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from anime_recs.core.errors import ArtifactError, UserInputError, plain
from anime_recs.core.options import config_default
from anime_recs.core.parsing import as_id
from anime_recs.data.files import load_anime, load_synopses
from anime_recs.data.preprocess import raw_ratings
from anime_recs.models import load_model
from anime_recs.models.base import RecommenderModel
from anime_recs.recommend.interactions import read_ratings
from anime_recs.recommend.recommender import AnimeRecommender
from anime_recs.store.artifacts import ArtifactVersion

logger = logging.getLogger(__name__)

#: The artifact that holds a fitted model of any family, and what it answers with besides itself (the ratings it was
#: trained on, the anime table, the synopses), with their types: as the steps publish them (config/config.yaml).
MODEL_ARTIFACT, MODEL_TYPE = config_default("model.embeddings_artifact"), config_default("nn_arts.embeddings_type")
RATINGS_ARTIFACT, RATINGS_TYPE = config_default("data.preprocessed_stats"), config_default("data.preprocessed_artifact_type")
ANIME_ARTIFACT, SYNOPSES_ARTIFACT = config_default("data.all_anime_artifact"), config_default("data.synopses_artifact")
RAW_TYPE = config_default("data.all_anime_type")

#: Where artifacts come from: ``StepContext.use_artifact`` (records the input on the step's run) or ``ArtifactStore.get``.
ArtifactSource = Callable[[str, str | None], ArtifactVersion]
Rec = TypeVar("Rec", bound=AnimeRecommender)


@dataclass(frozen=True)
class ModelVersion:
    """A trained model and the data it answers with, each at one exact version.

    Attributes:
        ref: The model version (``anime_nn_embeddings:v3``, or a label for files on disk).
        model: The fitted family.
        ratings: The preprocessed ratings the model was trained on.
        anime: The anime table.
        synopses: The synopses table, if any.
        inputs: Artifact name -> the exact ``name:vN`` each part was read from (empty for files).
    """

    ref: str
    model: RecommenderModel
    ratings: pd.DataFrame
    anime: pd.DataFrame
    synopses: pd.DataFrame | None
    inputs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_files(cls, model_dir: Path, ratings: Path, anime: Path, synopses: Path | None, ref: str,
                   mmap: bool = False) -> ModelVersion:
        """A model version from a saved model folder and the data files it was trained on (``mmap``: see
        :func:`~anime_recs.models.load_model`)."""
        return cls(ref, load_model(Path(model_dir), mmap), read_ratings(ratings), load_anime(anime),
                   load_synopses(synopses) if synopses is not None else None)

    def recommender(self, kind: type[Rec] = AnimeRecommender) -> Rec:  # type: ignore[assignment]
        """The recommender over this version (``kind``: :class:`AnimeRecommender` or a subclass)."""
        return kind(model=self.model, ratings=self.ratings, anime=self.anime, synopses=self.synopses)


#: ``NAME:vN`` or ``NAME:latest`` with an artifact name (letters, digits, ``_.-``; no path).
_FULL_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*:(?:v[0-9]{1,9}|latest)")


def model_ref(model: str | None) -> str:
    """``anime_nn_embeddings:vN`` for ``None``/``latest`` (newest), ``vN``, ``N`` or a full ``name:version`` ref."""
    if model is None or model in ("", "latest"):
        return f"{MODEL_ARTIFACT}:latest"
    text = str(model).strip()
    number = as_id(text.removeprefix("v"))
    if number is not None:
        return f"{MODEL_ARTIFACT}:v{number}"
    if _FULL_REF.fullmatch(text):
        return text
    raise UserInputError(f"model reference {plain(text)} is not one of: latest, N, vN (a version of {MODEL_ARTIFACT}), "
                         "NAME:vN or NAME:latest; `anime-recs artifacts list` shows the versions")


def open_model_version(get: ArtifactSource, model: str | None = None, ratings: str | None = None,
                       anime: str | None = None, synopses: str | None = None, mmap: bool = False) -> ModelVersion:
    """Open a model version and its data through one artifact source.

    A model version is a closed set: the ratings it was trained on and the anime table and synopses it was
    published with are recorded with it (``metadata["input"]``) and read at exactly those versions. A ``:latest``
    or missing reference means "the model's own"; only an exact ``name:vN`` overrides it.

    Args:
        get: ``StepContext.use_artifact`` or ``ArtifactStore.get``.
        model: The model version (see :func:`model_ref`).
        ratings: The ratings artifact (``None`` or ``:latest``: the one the model was trained on).
        anime: The anime table artifact (``None`` or ``:latest``: the model's own).
        synopses: The synopses artifact (``None`` or ``:latest``: the model's own).
        mmap: Map the model's arrays from the artifact's read-only files (servers; see :func:`load_model`).

    Raises:
        UserInputError: the ratings given have other users or anime than the model was trained on; a model that
            records no version of one of its inputs.
        ArtifactError: a missing or damaged artifact, a pinned version deleted (one line naming it).
    """
    artifact = get(model_ref(model), MODEL_TYPE)
    fitted = load_model(artifact.path, mmap)
    recorded = artifact.metadata.get("input", {})
    trained_on = recorded.get(RATINGS_ARTIFACT)

    def own(name: str, given: str | None) -> str:
        if given and not given.endswith(":latest"):
            return given
        if name not in recorded:
            raise UserInputError(f"model {artifact.ref} records no version of {name} (it was published without one, "
                                 f"or by an older version of this project); re-run the download and neural_network steps")
        return recorded[name]

    def fetch(name: str, given: str | None, type_: str) -> ArtifactVersion:
        ref = own(name, given)
        try:
            return get(ref, type_)
        except ArtifactError as exc:
            if ref != recorded.get(name) or "has no version" not in str(exc):
                raise
            raise ArtifactError(f"model {artifact.ref} answers with {ref}, which is no longer in the store ({exc}); "
                                f"restore it or train a new model on the current data") from None

    stats = fetch(RATINGS_ARTIFACT, ratings, RATINGS_TYPE)
    frame = read_ratings(stats.file())
    frame["rating"] = raw_ratings(frame["rating"].to_numpy(), stats.metadata)
    if trained_on and trained_on != stats.ref:
        users_match = np.array_equal(np.unique(frame["user_id"].to_numpy()), fitted.users.ids)
        anime_match = np.array_equal(np.unique(frame["anime_id"].to_numpy()), fitted.items.ids)
        if not (users_match and anime_match):
            raise UserInputError(
                f"model {artifact.ref} was trained on {trained_on}, but {stats.ref} has other users/anime; "
                f"pass --main_df {trained_on} or retrain with the neural_network step"
            )
    table = fetch(ANIME_ARTIFACT, anime, RAW_TYPE)
    texts = fetch(SYNOPSES_ARTIFACT, synopses, RAW_TYPE)
    inputs = {part.name: part.ref for part in (artifact, stats, table, texts)}
    return ModelVersion(artifact.ref, fitted, frame, load_anime(table.file()), load_synopses(texts.file()), inputs)
