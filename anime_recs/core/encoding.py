"""Raw MyAnimeList ids <-> contiguous embedding rows, saved with the model.

The encoder is fitted once, in the neural_network step, and travels with the
model as ``user_ids.npy`` / ``anime_ids.npy`` (position = embedding row), so
every later step maps ids exactly as training did.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from anime_recs.core.errors import UserInputError


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
    """The one map between raw ids and contiguous rows 0..n-1 (rows in ascending id order).

    Lookups of millions of ids at once are one gather in a dense table when the ids
    are small non-negative integers (MyAnimeList's are), else a binary search.
    Unknown ids raise a one-line error or map to -1.
    """

    _DENSE_LIMIT = 50_000_000

    def __init__(self, ids: np.ndarray, kind: str = "id") -> None:
        """Build from the raw ids (any order; duplicates are dropped)."""
        self.ids = np.unique(np.asarray(ids, dtype=np.int64))
        self.kind = kind
        self._dense: np.ndarray | None = None

    @classmethod
    def from_sorted(cls, ids: np.ndarray, kind: str = "id") -> "IdEncoder":
        """Wrap ids already sorted and unique (e.g. loaded from a saved model) without re-sorting."""
        enc = cls.__new__(cls)
        enc.ids = np.asarray(ids, dtype=np.int64)
        enc.kind = kind
        enc._dense = None
        return enc

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __contains__(self, raw_id: object) -> bool:
        try:
            value = int(raw_id)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return bool(self.positions(np.array([value]))[0] >= 0)

    def _dense_table(self) -> np.ndarray | None:
        if self._dense is None and len(self.ids) and self.ids[0] >= 0 and self.ids[-1] < self._DENSE_LIMIT:
            table = np.full(int(self.ids[-1]) + 1, -1, np.int64)
            table[self.ids] = np.arange(len(self.ids))
            self._dense = table
        return self._dense

    def positions(self, raw_ids: np.ndarray) -> np.ndarray:
        """Rows of ``raw_ids`` as int64, -1 where an id is unknown (never raises)."""
        raw = np.asarray(raw_ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(raw.shape, -1, np.int64)
        dense = self._dense_table()
        if dense is not None:
            inside = (raw >= 0) & (raw < len(dense))
            return np.where(inside, dense[np.where(inside, raw, 0)], -1)
        pos = np.minimum(np.searchsorted(self.ids, raw), len(self.ids) - 1)
        return np.where(self.ids[pos] == raw, pos, -1)

    def transform(self, raw_ids: np.ndarray, missing: str = "raise") -> np.ndarray:
        """Encode raw ids to int32 rows; ``missing='raise'`` or ``'minus_one'``."""
        pos = self.positions(raw_ids)
        if missing == "raise" and (pos < 0).any():
            raw = np.asarray(raw_ids, dtype=np.int64)
            bad = raw[pos < 0][:5].tolist()
            raise UserInputError(
                f"unknown {self.kind} id(s) {bad}: the model was trained on {len(self.ids)} "
                f"{self.kind}s (ids {self.ids[0] if len(self.ids) else '-'}..{self.ids[-1] if len(self.ids) else '-'}); "
                "retrain or pick a known id"
            )
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
        return cls.from_sorted(np.load(path), kind)
