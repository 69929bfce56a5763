"""Training rows read from the preprocessed parquet in record batches, never as one table.

For data sets larger than memory (the full MyAnimeList list has ~109M rows) the
neural_network step trains from :class:`ParquetRatings` instead of numpy arrays:

* the id encoders come from one pass over the ``user_id`` and ``anime_id``
  columns only (:meth:`ParquetRatings.encoders`);
* every row belongs to train, validation or test by a hash of its position in
  the file (:func:`split_of_rows`): deterministic, independent of how the file
  is read in batches, and needing no permutation of all rows;
* the validation and test rows (a small share) are materialised in one pass
  (:meth:`ParquetRatings.holdout`), the training rows are streamed epoch by
  epoch (:meth:`ParquetRatings.train_batches`): row groups in a per-epoch order,
  shuffled within a window of ``shuffle_rows`` rows, so memory is bounded by
  that window, the embedding tables and their optimizer state.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from anime_recs.core.encoding import IdEncoder, RatingArrays
from anime_recs.core.errors import DataValidationError, UserInputError

logger = logging.getLogger(__name__)

TRAIN, VAL, TEST = 0, 1, 2
ID_COLUMNS = ("user_id", "anime_id")
TRAIN_COLUMNS = (*ID_COLUMNS, "rating")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def split_of_rows(positions: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """The split (TRAIN, VAL or TEST, int8) of rows by their 0-based position in the file.

    A SplitMix64 hash of ``(seed, position)`` mapped to [0, 1): rows below ``val_fraction`` validate,
    the next ``test_fraction`` test, the rest train. The same row gets the same split whichever
    batches it is read in.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(positions, np.uint64) + np.uint64(seed) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    out = np.full(u.shape, TRAIN, np.int8)
    out[u < val_fraction + test_fraction] = TEST
    out[u < val_fraction] = VAL
    return out


@dataclass
class Holdout:
    """What :meth:`ParquetRatings.holdout` reads in one pass.

    Attributes:
        val: Encoded validation rows (drive early stopping).
        test: The test rows with every column of the file, as stored.
        train_rows: Number of training rows.
        train_rating_sum: Sum of the training rows' (scaled) ratings.
    """

    val: RatingArrays
    test: pd.DataFrame
    train_rows: int
    train_rating_sum: float


class ParquetRatings:
    """The preprocessed ratings parquet as a source of training batches.

    Args:
        path: The preprocessed stats parquet (``user_id``, ``anime_id``, ``rating`` on the raw scale, ...).
        val_fraction: Share of rows that validate.
        test_fraction: Share of rows held out for the final test numbers.
        seed: Seed of the split hash and of the per-epoch shuffles.
        read_rows: Rows per record batch read from the file.
        shuffle_rows: Training rows shuffled together (the memory bound of streaming).
        rating_range: ``(min, max)`` of the ratings in the file: training and validation rows come scaled to
            [0, 1] (the network's own scale); test rows keep the file's ratings.

    Raises:
        DataValidationError: The file lacks a training column.
        UserInputError: Fractions out of range.
    """

    def __init__(self, path: Path, val_fraction: float, test_fraction: float, seed: int,
                 read_rows: int = 1 << 20, shuffle_rows: int = 8_000_000,
                 rating_range: tuple[float, float] = (0.0, 1.0)) -> None:
        if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise UserInputError(f"validation ({val_fraction:g}) and test ({test_fraction:g}) fractions must be in "
                                 "[0, 1) and leave rows for training; lower model.test_size or model.holdout_fraction")
        self.path = Path(path)
        self.file = pq.ParquetFile(self.path)
        missing = [c for c in TRAIN_COLUMNS if c not in self.file.schema_arrow.names]
        if missing:
            raise DataValidationError(f"{self.path.name} lacks column(s) {missing}; re-run the preprocess step")
        self.val_fraction, self.test_fraction, self.seed = float(val_fraction), float(test_fraction), int(seed)
        self.read_rows, self.shuffle_rows = int(read_rows), max(int(shuffle_rows), 1)
        self.rating_min, self.rating_span = float(rating_range[0]), float(rating_range[1]) - float(rating_range[0])
        sizes = [self.file.metadata.row_group(i).num_rows for i in range(self.file.num_row_groups)]
        self._group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._group_starts[-1])

    def _batches(self, columns: tuple[str, ...], groups: list[int] | None = None) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """(row positions, record batch) over ``groups`` (default: all, in file order)."""
        for group in range(self.file.num_row_groups) if groups is None else groups:
            start = int(self._group_starts[group])
            for batch in self.file.iter_batches(batch_size=self.read_rows, row_groups=[group], columns=list(columns)):
                yield np.arange(start, start + batch.num_rows, dtype=np.int64), batch
                start += batch.num_rows

    def _splits(self, positions: np.ndarray) -> np.ndarray:
        return split_of_rows(positions, self.val_fraction, self.test_fraction, self.seed)

    def encoders(self) -> tuple[IdEncoder, IdEncoder]:
        """User and anime encoders from one pass over the two id columns (no other column is read)."""
        users, anime = np.empty(0, np.int64), np.empty(0, np.int64)
        for _, batch in self._batches(ID_COLUMNS):
            users = np.union1d(users, batch.column(0).to_numpy())
            anime = np.union1d(anime, batch.column(1).to_numpy())
        if len(users) == 0:
            raise DataValidationError(f"{self.path.name} has no rows; check the preprocess step's filters")
        return IdEncoder.from_sorted(users, "user"), IdEncoder.from_sorted(anime, "anime")

    def _encode(self, batch: pa.RecordBatch, users: IdEncoder, anime: IdEncoder) -> RatingArrays:
        rating = np.clip(self._scaled(batch.column(2)), 0.0, 1.0)
        return RatingArrays(users.transform(batch.column(0).to_numpy()), anime.transform(batch.column(1).to_numpy()),
                            rating)

    def _scaled(self, ratings: pa.Array) -> np.ndarray:
        """Ratings as the network trains on them: float32 in [0, 1] (the same arithmetic as the model family's)."""
        raw = ratings.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        if self.rating_min == 0.0 and self.rating_span == 1.0:
            return raw
        return ((raw - self.rating_min) / self.rating_span).astype(np.float32)

    def holdout(self, users: IdEncoder, anime: IdEncoder) -> Holdout:
        """Validation rows (encoded), test rows (every column) and the training rows' count and rating sum."""
        val_parts: list[RatingArrays] = []
        test_parts: list[pd.DataFrame] = []
        n_train, rating_sum = 0, 0.0
        for positions, batch in self._batches(tuple(self.file.schema_arrow.names)):
            split = self._splits(positions)
            train_ratings = self._scaled(batch.column("rating"))[split == TRAIN]
            n_train, rating_sum = n_train + len(train_ratings), rating_sum + float(train_ratings.sum(dtype=np.float64))
            columns = pa.RecordBatch.from_arrays([batch.column(c) for c in TRAIN_COLUMNS], list(TRAIN_COLUMNS))
            val_parts.append(self._encode(columns, users, anime).take(np.flatnonzero(split == VAL)))
            test_parts.append(batch.filter(pa.array(split == TEST)).to_pandas())
        val = RatingArrays(*(np.concatenate([getattr(p, f) for p in val_parts]) for f in RatingArrays._fields))
        if len(val) == 0 or n_train == 0:
            raise UserInputError(f"{len(self):,} rows leave an empty validation or training set; "
                                 "raise model.test_size or use more data")
        return Holdout(val, pd.concat(test_parts, ignore_index=True), n_train, rating_sum)

    def train_batches(self, epoch: int, batch_size: int, users: IdEncoder, anime: IdEncoder) -> Iterator[RatingArrays]:
        """One epoch of shuffled training batches of ``batch_size`` rows (the last may be smaller).

        Row groups come in an order drawn from ``(seed, epoch)``; rows are shuffled within windows of
        ``shuffle_rows``. Batches are prepared on a background thread one window ahead.
        """
        rng = np.random.default_rng([self.seed, epoch])
        groups = [int(g) for g in rng.permutation(self.file.num_row_groups)]
        return _prefetched(self._windows(groups, rng, batch_size, users, anime), depth=2)

    def _windows(self, groups: list[int], rng: np.random.Generator, batch_size: int, users: IdEncoder,
                 anime: IdEncoder) -> Iterator[RatingArrays]:
        pending: list[RatingArrays] = []
        held = 0
        for positions, batch in self._batches(TRAIN_COLUMNS, groups):
            rows = self._encode(batch, users, anime).take(np.flatnonzero(self._splits(positions) == TRAIN))
            pending.append(rows)
            held += len(rows)
            if held >= self.shuffle_rows:
                yield from _shuffled_batches(pending, rng, batch_size, keep_tail=True)
                held = len(pending[0]) if pending else 0
        yield from _shuffled_batches(pending, rng, batch_size, keep_tail=False)


def _shuffled_batches(pending: list[RatingArrays], rng: np.random.Generator, batch_size: int,
                      keep_tail: bool) -> Iterator[RatingArrays]:
    """Shuffle the pending rows together and yield full batches; the remainder stays in ``pending`` if ``keep_tail``."""
    if not pending:
        return
    window = RatingArrays(*(np.concatenate([getattr(p, f) for p in pending]) for f in RatingArrays._fields))
    pending.clear()
    window = window.take(rng.permutation(len(window)))
    full = len(window) // batch_size * batch_size if keep_tail else len(window)
    for start in range(0, full, batch_size):
        yield window.take(slice(start, min(start + batch_size, full)))  # type: ignore[arg-type]
    if keep_tail and full < len(window):
        pending.append(window.take(slice(full, None)))  # type: ignore[arg-type]


_DONE = object()


def _prefetched(items: Iterator[RatingArrays], depth: int) -> Iterator[RatingArrays]:
    """Run ``items`` on a daemon thread, ``depth`` items ahead of the consumer (numpy and pyarrow release the GIL)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            slots.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="parquet-batches")
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@dataclass
class StreamedRows:
    """The training rows of a :class:`ParquetRatings` as a :class:`anime_recs.models.network.training.BatchSource`.

    Attributes:
        reader: The file and its split.
        users: Encoder of the user ids (from :meth:`ParquetRatings.encoders`).
        anime: Encoder of the anime ids.
        rows: Training rows per epoch.
        mean_rating: Mean scaled rating of the training rows.
    """

    reader: ParquetRatings
    users: IdEncoder
    anime: IdEncoder
    rows: int
    mean_rating: float

    def __len__(self) -> int:
        return self.rows

    def epoch_batches(self, epoch: int, batch_size: int) -> Iterator[RatingArrays]:
        """The shuffled training batches of ``epoch`` read from the file."""
        return self.reader.train_batches(epoch, batch_size, self.users, self.anime)
