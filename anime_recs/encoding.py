"""Raw MyAnimeList ids <-> contiguous embedding rows, saved with the model.

The encoder is fitted once, in the neural_network step, and travels with the
model as ``user_ids.npy`` / ``anime_ids.npy`` (position = embedding row), so
every later step maps ids exactly as training did.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import UserInputError


class RatingArrays(NamedTuple):
    """Encoded interactions: embedding rows of users and anime plus scaled ratings."""

    user_idx: np.ndarray  # int32
    anime_idx: np.ndarray  # int32
    rating: np.ndarray  # float32 in [0, 1]

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.rating.shape[0])

    def take(self, positions: np.ndarray) -> "RatingArrays":
        """Return the rows at ``positions``."""
        return RatingArrays(self.user_idx[positions], self.anime_idx[positions], self.rating[positions])


class IdEncoder:
    """Maps raw ids to 0..n-1 (sorted order) and back; unknown ids raise or map to -1."""

    def __init__(self, ids: np.ndarray, kind: str = "id") -> None:
        """Build from the distinct raw ids (any order; duplicates are dropped)."""
        self.ids = np.unique(np.asarray(ids, dtype=np.int64))
        self.kind = kind

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __contains__(self, raw_id: object) -> bool:
        try:
            value = int(raw_id)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        pos = int(np.searchsorted(self.ids, value))
        return pos < len(self.ids) and int(self.ids[pos]) == value

    def transform(self, raw_ids: np.ndarray, missing: str = "raise") -> np.ndarray:
        """Encode raw ids to int32 rows; ``missing='raise'`` or ``'minus_one'``."""
        raw = np.asarray(raw_ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, raw)
        pos_clipped = np.minimum(pos, max(len(self.ids) - 1, 0))
        found = (pos < len(self.ids)) & (self.ids[pos_clipped] == raw) if len(self.ids) else np.zeros(raw.shape, bool)
        if not found.all():
            if missing == "raise":
                bad = raw[~found][:5].tolist()
                raise UserInputError(
                    f"unknown {self.kind} id(s) {bad}: the model was trained on {len(self.ids)} "
                    f"{self.kind}s (ids {self.ids[0] if len(self.ids) else '-'}..{self.ids[-1] if len(self.ids) else '-'}); "
                    "retrain or pick a known id"
                )
            return np.where(found, pos_clipped, -1).astype(np.int32)
        return pos.astype(np.int32)

    def encode_one(self, raw_id: int) -> int:
        """Encode a single raw id, raising a one-line error if unknown."""
        return int(self.transform(np.array([raw_id]))[0])

    def inverse(self, rows: np.ndarray) -> np.ndarray:
        """Raw ids of embedding rows."""
        return self.ids[np.asarray(rows)]

    def save(self, path: Path) -> None:
        """Write the ids as ``.npy`` (position = row)."""
        np.save(path, self.ids)

    @classmethod
    def load(cls, path: Path, kind: str = "id") -> "IdEncoder":
        """Read an encoder written by :meth:`save`."""
        enc = cls.__new__(cls)
        enc.ids = np.load(path)
        enc.kind = kind
        return enc
