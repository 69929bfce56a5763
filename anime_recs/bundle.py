"""The trained model as the recommenders see it: embeddings, encoders, head and scaling.

The neural_network step writes these files into one artifact (the "embeddings
bundle"); every later step loads it with :func:`load_bundle`, so ids map to
embedding rows exactly as in training, and no step needs TensorFlow to score.

Files: ``user_embeddings.npy``, ``anime_embeddings.npy`` (L2-normalised, float32),
``user_ids.npy``, ``anime_ids.npy`` (the encoders: position = row),
``head.json`` (:class:`~anime_recs.embeddings.PredictionHead`), ``scaling.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embeddings import PredictionHead
from .encoding import IdEncoder
from .errors import UserInputError
from .io import atomic_write, write_json
from .preprocess import Scaling

BUNDLE_FILES = ("user_embeddings.npy", "anime_embeddings.npy", "user_ids.npy", "anime_ids.npy", "head.json", "scaling.json")


def _save_npy(path: Path, array: np.ndarray) -> None:
    # Through an open handle: np.save given a path would append ".npy" to the temp name.
    with open(path, "wb") as handle:
        np.save(handle, array)


@dataclass
class ModelBundle:
    """Everything needed to score and compare users and anime without TensorFlow."""

    user_embeddings: np.ndarray
    anime_embeddings: np.ndarray
    user_encoder: IdEncoder
    anime_encoder: IdEncoder
    head: PredictionHead
    scaling: Scaling

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the bundle's files into ``folder``; return name -> path."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / name for name in BUNDLE_FILES}
        for name, array in (("user_embeddings.npy", self.user_embeddings), ("anime_embeddings.npy", self.anime_embeddings),
                            ("user_ids.npy", self.user_encoder.ids), ("anime_ids.npy", self.anime_encoder.ids)):
            atomic_write(paths[name], lambda tmp, a=array: _save_npy(tmp, a))
        write_json(self.head.to_dict(), paths["head.json"])
        write_json(self.scaling.as_dict(), paths["scaling.json"])
        return paths


def load_bundle(folder: Path) -> ModelBundle:
    """Read a bundle written by :meth:`ModelBundle.save` (e.g. an artifact's folder)."""
    missing = [name for name in BUNDLE_FILES if not (folder / name).is_file()]
    if missing:
        raise UserInputError(f"{folder} is not a model embeddings bundle (missing {', '.join(missing)}); run the neural_network step")
    users = np.load(folder / "user_embeddings.npy")
    anime = np.load(folder / "anime_embeddings.npy")
    user_encoder = IdEncoder.load(folder / "user_ids.npy", "user")
    anime_encoder = IdEncoder.load(folder / "anime_ids.npy", "anime")
    if len(user_encoder) != users.shape[0] or len(anime_encoder) != anime.shape[0]:
        raise UserInputError(f"embeddings bundle {folder} is inconsistent (encoder and embedding sizes differ); retrain")
    head = PredictionHead.from_dict(json.loads((folder / "head.json").read_text()))
    scaling = Scaling(**json.loads((folder / "scaling.json").read_text()))
    return ModelBundle(users, anime, user_encoder, anime_encoder, head, scaling)
