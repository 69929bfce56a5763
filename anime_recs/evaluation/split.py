"""The evaluation protocol's TRAIN/TEST split (see :mod:`anime_recs.evaluation`)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anime_recs.core.errors import UserInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Columns:
    """Names of the user, item and rating columns of the interaction frames."""

    user: str = "user_id"
    item: str = "anime_id"
    rating: str = "rating"


DEFAULT_COLUMNS = Columns()


@dataclass(frozen=True)
class Split:
    """The protocol's TRAIN/TEST partition.

    Attributes:
        train: TRAIN rows (user, item, rating columns), sorted by (user, item).
        test: TEST rows, same columns and order.
        checksum: First 16 hex digits of the sha256 of TEST (see :func:`split_checksum`).
        cols: The column names used in ``train`` and ``test``.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    checksum: str
    cols: Columns = field(default_factory=Columns)

    def describe(self) -> dict[str, int | str]:
        """Row, user and item counts of both parts plus the checksum, for logs and reports."""
        return {
            "users": int(pd.concat([self.train[self.cols.user], self.test[self.cols.user]]).nunique()),
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "train_items": int(self.train[self.cols.item].nunique()),
            "test_only_items": int((~self.test[self.cols.item].isin(self.train[self.cols.item])).sum()),
            "checksum": self.checksum,
        }


def _int_ids(values: pd.Series, name: str) -> np.ndarray:
    """Raw ids as int64, refusing NaN or fractional ids instead of silently truncating them."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    as_float = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
    if bad.any():
        raise UserInputError(
            f"column {name!r} must hold integer ids; found {values[bad].iloc[:3].tolist()} in {int(bad.sum())} rows"
        )
    return as_float.astype(np.int64)


def split_checksum(users: np.ndarray, items: np.ndarray) -> str:
    """Fingerprint of a set of (user, item) pairs, independent of row order.

    The pairs are written as ``"user,item\\n"`` lines (decimal integers), sorted
    numerically by (user, item), hashed with sha256; the first 16 hex digits are
    returned. Shell equivalent for a CSV of TEST rows without header::

        cut -d, -f1,2 test.csv | sort -t, -k1,1n -k2,2n | sha256sum | cut -c1-16

    Args:
        users: User ids of the pairs.
        items: Item ids of the pairs, same length.

    Returns:
        16 lowercase hex digits.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    order = np.lexsort((items, users))
    text = pd.DataFrame({"u": users[order], "i": items[order]}).to_csv(index=False, header=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def protocol_split(
    df: pd.DataFrame,
    user_col: str = "user_id",
    item_col: str = "anime_id",
    rating_col: str = "rating",
    min_ratings: int = 5,
    test_fraction: float = 0.2,
    seed: int = 42,
    min_rating: float = 1.0,
) -> Split:
    """Split interactions into TRAIN and TEST exactly as the evaluation protocol says.

    The per-user draws must be the very ``rng.choice`` calls of the protocol, in
    ascending user order, so they run as one call per user; everything else
    (filtering, sorting, offsets, masks) is vectorised.

    Args:
        df: Interactions; extra columns are ignored.
        user_col: User id column.
        item_col: Item id column.
        rating_col: Rating column.
        min_ratings: Users with fewer rated rows are dropped.
        test_fraction: Share of each user's rows drawn into TEST (rounded, at least 1).
        seed: Seed of the one generator that walks the users.
        min_rating: Rows rated below this are "not rated" and dropped (1 for
            MyAnimeList, where 0 means unrated; 0.5 for MovieLens' half stars).

    Returns:
        The :class:`Split`, both parts sorted by (user, item) with a fresh index.

    Raises:
        UserInputError: On missing columns, non-integer ids, duplicated
            (user, item) pairs, bad parameters, or when no user is left.
    """
    missing = [c for c in (user_col, item_col, rating_col) if c not in df.columns]
    if missing:
        raise UserInputError(f"interactions lack column(s) {missing}; have {list(df.columns)}")
    if not 0.0 < test_fraction < 1.0:
        raise UserInputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if min_ratings < 1:
        raise UserInputError(f"min_ratings must be at least 1, got {min_ratings}")

    rating = pd.to_numeric(df[rating_col], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(rating) & (rating >= min_rating)
    frame = df.loc[keep, [user_col, item_col, rating_col]]
    users = _int_ids(frame[user_col], user_col)
    items = _int_ids(frame[item_col], item_col)

    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    dup = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        raise UserInputError(
            f"{int(dup.sum())} duplicated ({user_col}, {item_col}) pairs, e.g. ({users[first]}, {items[first]}); "
            "deduplicate the interactions first"
        )

    uniq, counts = np.unique(users, return_counts=True)
    kept = counts >= min_ratings
    row_kept = np.repeat(kept, counts)
    if not kept.any():
        raise UserInputError(f"no user has at least {min_ratings} ratings >= {min_rating}")
    logger.info(
        "protocol split: %d rated rows, %d/%d users with >= %d ratings",
        len(users),
        int(kept.sum()),
        len(uniq),
        min_ratings,
    )

    # Row positions after dropping the light users: the kept users' blocks stay contiguous.
    counts_k = counts[kept]
    starts_k = np.cumsum(counts_k) - counts_k
    # np.round and Python's round both round half to even on the same float product.
    sizes = np.maximum(1, np.round(test_fraction * counts_k).astype(np.int64))
    rng = np.random.default_rng(seed)
    test_pos = np.empty(int(sizes.sum()), dtype=np.int64)
    cursor = 0
    for start, n, size in zip(starts_k.tolist(), counts_k.tolist(), sizes.tolist()):
        test_pos[cursor : cursor + size] = start + rng.choice(n, size=size, replace=False)
        cursor += size
    is_test = np.zeros(int(counts_k.sum()), dtype=bool)
    is_test[test_pos] = True

    ordered = frame.iloc[order[row_kept]].reset_index(drop=True)
    ordered[user_col] = users[row_kept]
    ordered[item_col] = items[row_kept]
    train = ordered.loc[~is_test].reset_index(drop=True)
    test = ordered.loc[is_test].reset_index(drop=True)
    checksum = split_checksum(test[user_col].to_numpy(), test[item_col].to_numpy())
    logger.info("protocol split: %d train rows, %d test rows, test checksum %s", len(train), len(test), checksum)
    return Split(train=train, test=test, checksum=checksum, cols=Columns(user_col, item_col, rating_col))


def validation_split(split: Split, seed: int = 7) -> Split:
    """The protocol applied again inside TRAIN: what tuning chooses on, never touching TEST.

    Args:
        split: A protocol split.
        seed: Seed of the inner split (different from the outer one).
    """
    c = split.cols
    return protocol_split(split.train, c.user, c.item, c.rating, min_rating=float("-inf"), seed=seed)
