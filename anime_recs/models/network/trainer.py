"""What every training path of the network shares: checkpoints, per-epoch bookkeeping, batches, the custom loop.

:func:`anime_recs.models.network.training.train_model` picks a path; the paths
(:mod:`.lazy_adam`, :mod:`.keras_fit`, :mod:`.distributed`) build on the pieces here, so none of them
imports another path or the dispatcher.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import math
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from anime_recs.core.encoding import RatingArrays
from anime_recs.core.errors import UserInputError
from anime_recs.models.network.architecture import (
    ANIME_EMBEDDING,
    USER_EMBEDDING,
    ModelParams,
    learning_rate,
)

logger = logging.getLogger(__name__)

BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
LAST_OPTIMIZER = "last_optimizer.npz"
STATE_JSON = "state.json"


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    Attributes:
        model: The trained model (best weights restored), same layers as
            :func:`anime_recs.models.network.architecture.build_model`.
        history: One row per epoch (see the module docstring for columns).
        best_epoch: 0-based epoch whose weights the model holds.
        stopped_early: Whether early stopping ended training before ``epochs``.
    """

    model: keras.Model
    history: pd.DataFrame
    best_epoch: int
    stopped_early: bool

EpochCallback = Callable[[int, dict], None]


class BatchSource(Protocol):
    """Training rows that arrive batch by batch, epoch by epoch, instead of as arrays in memory.

    :class:`anime_recs.data.streaming.StreamedRows` reads them from the preprocessed parquet.
    """

    def __len__(self) -> int:
        """Rows per epoch."""
        ...

    def epoch_batches(self, epoch: int, batch_size: int) -> Iterator[RatingArrays]:
        """The shuffled batches of ``epoch`` (the same for the same epoch, on every worker)."""
        ...


def loss_like(name: str) -> Callable | None:
    """The per-sample Keras function for a loss or metric name, or None."""
    try:
        fn = keras.losses.get(name)
    except (ValueError, TypeError):
        return None
    return fn if callable(fn) and not isinstance(fn, type) else None


# --------------------------------------------------------------------------
# Checkpoints and per-epoch bookkeeping shared by both paths
# --------------------------------------------------------------------------


class CheckpointStore:
    """Files in ``checkpoint_dir``; every write is atomic (temp file, then rename)."""

    def __init__(self, directory: Path, path: str, n_users: int, n_anime: int, params: ModelParams) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.identity = {
            "training_path": path,
            "n_users": int(n_users),
            "n_anime": int(n_anime),
            "embedding_size": int(params.embedding_size),
        }

    def path(self, name: str) -> Path:
        return self.directory / name

    def save_weights(self, model: keras.Model, name: str) -> None:
        # save_weights insists on the ".weights.h5" suffix, so the temp name keeps it.
        tmp = self.path(name.replace(".weights.h5", ".tmp.weights.h5"))
        model.save_weights(tmp)
        os.replace(tmp, self.path(name))

    def save_arrays(self, arrays: Mapping[str, Callable[[], np.ndarray]], name: str) -> None:
        """Write an ``.npz`` that ``np.load`` reads, one array in memory at a time.

        Values are callables so that a 50 MB optimizer slot is copied out of
        TensorFlow only while it is being written (``np.savez`` would need
        every array at once).
        """
        tmp = self.path(name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, produce in arrays.items():
                with archive.open(key + ".npy", "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asarray(produce()), allow_pickle=False)
        os.replace(tmp, self.path(name))

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path(name)) as data:
            return {key: data[key] for key in data.files}

    def write_state(self, state: dict[str, Any]) -> None:
        tmp = self.path(STATE_JSON + ".tmp")
        tmp.write_text(json.dumps({**self.identity, **state}, indent=1, default=float))
        os.replace(tmp, self.path(STATE_JSON))

    def read_state(self) -> dict[str, Any] | None:
        file = self.path(STATE_JSON)
        if not file.exists():
            # Checkpoints are kept only by runs that had model.resume=true (the others write to scratch space).
            logger.warning("model.resume=true but no checkpoint exists for this input and configuration (%s); "
                           "only runs with model.resume=true keep checkpoints: training from scratch", file)
            return None
        state = json.loads(file.read_text())
        for key, value in self.identity.items():
            if state.get(key) != value:
                raise UserInputError(
                    f"cannot resume from {self.directory}: it was written with {key}={state.get(key)!r}, "
                    f"this run has {value!r}; set resume=false or use another checkpoint directory"
                )
        return state


class EpochTracker:
    """History rows, best value, early stopping and checkpoints, epoch by epoch.

    The fast path uses all of it; the keras path lets Keras' EarlyStopping and
    ModelCheckpoint decide and uses this for history, state and last checkpoint.
    """

    def __init__(
        self,
        params: ModelParams,
        store: CheckpointStore | None,
        state: dict[str, Any] | None,
        on_epoch_end: EpochCallback | None,
        verbose: bool,
    ) -> None:
        self.params = params
        self.store = store
        self.on_epoch_end = on_epoch_end
        self.verbose = verbose
        state = state or {}
        self.rows: list[dict[str, float]] = list(state.get("history", []))
        self.start_epoch = int(state["epoch"]) + 1 if "epoch" in state else 0
        self.best: float | None = state.get("best")
        self.best_epoch: int = int(state.get("best_epoch", 0))
        self.wait: int = int(state.get("wait", 0))
        self.stopped_early: bool = bool(state.get("stopped_early", False))
        self.resumed = bool(state)
        self.best_weights: list[np.ndarray] | None = None

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.params.mode == "min" else value > self.best

    def early_stop_update(self, epoch: int, value: float, model: keras.Model) -> bool:
        """Keras EarlyStopping(restore_best_weights=True) logic; True = stop now."""
        if self.best_weights is None:
            self.best_weights = model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_weights = model.get_weights()
            if self.store is not None:
                self.store.save_weights(model, BEST_WEIGHTS)
            return False
        return self.wait >= self.params.patience and epoch > 0

    def finish_epoch(
        self,
        epoch: int,
        row: dict[str, float],
        model: keras.Model,
        optimizer_state: Callable[[], Mapping[str, Callable[[], np.ndarray]]],
        finished: bool,
    ) -> None:
        """Record the row, write last checkpoint + state, print, call back."""
        row = {"epoch": epoch, **{k: float(v) for k, v in row.items()}}
        self.rows.append(row)
        if self.store is not None:
            self.store.save_weights(model, LAST_WEIGHTS)
            self.store.save_arrays(optimizer_state(), LAST_OPTIMIZER)
            self.store.write_state(
                {
                    "epoch": epoch,
                    "best": self.best,
                    "best_epoch": self.best_epoch,
                    "wait": self.wait,
                    "stopped_early": self.stopped_early,
                    "finished": finished,
                    "monitor": self.params.monitor,
                    "history": self.rows,
                }
            )
        line = (
            f"epoch {epoch + 1}/{self.params.epochs} - {row['seconds']:.1f}s - loss {row['loss']:.4f} - "
            f"val_loss {row['val_loss']:.4f} - lr {row['lr']:.3g}"
        )
        if self.verbose:
            print(line, flush=True)
        else:
            logger.info(line)
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, dict(row))

    def restore_for_resume(self, model: keras.Model) -> dict[str, np.ndarray] | None:
        """Load best then last weights; return the saved optimizer state."""
        if not self.resumed or self.store is None:
            return None
        if self.store.path(BEST_WEIGHTS).exists():
            model.load_weights(self.store.path(BEST_WEIGHTS))
            self.best_weights = model.get_weights()
        model.load_weights(self.store.path(LAST_WEIGHTS))
        # Progress lines count epochs from 1, so the last completed epoch is start_epoch in their numbering.
        logger.info("resuming after epoch %d from %s", self.start_epoch, self.store.directory)
        return self.store.load_arrays(LAST_OPTIMIZER)

    def result(self, model: keras.Model) -> TrainResult:
        history = pd.DataFrame(self.rows)
        if not history.empty:
            history["epoch"] = history["epoch"].astype(int)
            metrics = list(self.params.model_metrics)
            first = ["epoch", "loss", *metrics, "val_loss", *("val_" + m for m in metrics)]
            first += ["val_loss_incl_l2", "loss_incl_l2", "lr", "seconds"]
            ordered = [c for c in first if c in history.columns]
            history = history[ordered + [c for c in history.columns if c not in ordered]]
        return TrainResult(model=model, history=history, best_epoch=self.best_epoch, stopped_early=self.stopped_early)


def l2_penalty(model: keras.Model, l2: float) -> float:
    """The L2 term Keras adds to its losses: over every row of both tables."""
    total = 0.0
    for name in (USER_EMBEDDING, ANIME_EMBEDDING):
        table = model.get_layer(name).embeddings.value
        total += float(tf.reduce_sum(tf.square(table)))
    return l2 * total


# --------------------------------------------------------------------------
# The epoch loop of the custom paths (fast and mirrored)
# --------------------------------------------------------------------------


class CustomTrainer:
    """What the custom training loops share: loss and metric sums, validation, and the epoch loop.

    Subclasses train the Keras model's own variables in :meth:`step` (adding the batch's loss and
    metric sums and row count to ``train_sums``), evaluate a slice of the validation rows in
    ``_eval`` and expose their optimizer state for checkpoints.
    """

    def __init__(self, model: keras.Model, params: ModelParams) -> None:
        self.model = model
        self.params = params
        self.loss_fn = loss_like(params.model_loss)
        self.metric_fns = [(name, loss_like(name)) for name in params.model_metrics]
        n_sums = 1 + len(self.metric_fns)
        self.train_sums = tf.Variable(tf.zeros(n_sums + 1, tf.float64), trainable=False)  # + row count

    def step(self, batch: RatingArrays, lr: tf.Tensor) -> None:
        """Train on one batch at learning rate ``lr``."""
        raise NotImplementedError

    def _eval(self, users, anime, ratings, start, stop):  # type: ignore[no-untyped-def]
        """Loss and metric sums over ``[start, stop)`` of the validation tensors."""
        raise NotImplementedError

    def optimizer_state(self) -> dict[str, Callable[[], np.ndarray]]:
        """Name -> reader of every optimizer variable (read lazily, see save_arrays)."""
        raise NotImplementedError

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`optimizer_state` saved."""
        raise NotImplementedError

    def _sums(self, y: tf.Tensor, pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Mean data loss and the per-batch sums of loss and metrics."""
        y2 = tf.reshape(y, [-1, 1])
        per_sample = self.loss_fn(y2, pred)
        values = [tf.reduce_sum(per_sample)] + [tf.reduce_sum(fn(y2, pred)) for _, fn in self.metric_fns]
        return tf.reduce_mean(per_sample), tf.stack(values)

    def load_from_model(self) -> None:
        """Called after a resume restored the model's weights (for trainers that keep their own copy)."""

    def sync_model(self) -> None:
        """Make the Keras model hold the trained weights (called before validation and checkpoints)."""

    def _evaluate(self, users: np.ndarray, anime: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Mean loss and metrics over the validation rows."""
        n = len(users)
        tensors = tf.constant(users, tf.int32), tf.constant(anime, tf.int32), tf.constant(ratings, tf.float32)
        total = np.zeros(1 + len(self.metric_fns))
        for start in range(0, n, self.params.batch_size):
            stop = min(start + self.params.batch_size, n)
            total += self._eval(*tensors, tf.constant(start), tf.constant(stop)).numpy()
        return total / n

    def fit(self, train: RatingArrays | BatchSource, val: RatingArrays, tracker: EpochTracker) -> None:
        """Train epoch by epoch with the tracker's early stopping, checkpoints and history."""
        params = self.params
        saved = tracker.restore_for_resume(self.model)
        if saved is not None:
            self.load_from_model()
            self.load_optimizer_state(saved)

        names = ["loss", *(name for name, _ in self.metric_fns)]
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(ArrayBatches(train, params.seed)) if isinstance(train, RatingArrays) else train
            for epoch in range(tracker.start_epoch, params.epochs):
                started = time.perf_counter()
                lr = learning_rate(epoch, params)
                self.train_sums.assign(tf.zeros_like(self.train_sums))
                lr_t = tf.constant(lr, tf.float32)
                for batch in source.epoch_batches(epoch, params.batch_size):
                    self.step(batch, lr_t)
                sums = self.train_sums.numpy()
                train_means = sums[:-1] / sums[-1]
                self.sync_model()
                val_means = self._evaluate(val.user_idx, val.anime_idx, val.rating)

                row: dict[str, float] = {}
                for name, value in zip(names, train_means):
                    row[name] = float(value)
                for name, value in zip(names, val_means):
                    row["val_" + name] = float(value)
                row["val_loss_incl_l2"] = row["val_loss"] + l2_penalty(self.model, params.l2_reg_factor)
                row["lr"] = lr

                value = row[params.monitor]
                if math.isnan(value):
                    logger.warning("epoch %d: %s is NaN", epoch, params.monitor)
                stop_now = tracker.early_stop_update(epoch, value, self.model)
                row["seconds"] = time.perf_counter() - started
                tracker.stopped_early = stop_now
                finished = stop_now or epoch + 1 >= params.epochs
                tracker.finish_epoch(epoch, row, self.model, self.optimizer_state, finished)
                if stop_now:
                    logger.info("early stopping after epoch %d: best %s at epoch %d", epoch, params.monitor,
                                tracker.best_epoch)  # fmt: skip
                    break
        if tracker.best_weights is not None:
            self.model.set_weights(tracker.best_weights)


class ArrayBatches:
    """In-memory training rows as a :class:`BatchSource`: a stateless shuffle per epoch.

    Stateless, so a resumed run sees the same order epoch by epoch. The next epoch's order is drawn
    on a worker thread while this epoch trains (TF ops release the GIL), so it is off the critical
    path; batches are picked from the caller's arrays by that order (no shuffled copy of the rows).
    """

    def __init__(self, rows: RatingArrays, seed: int) -> None:
        self.rows, self.seed = rows, seed
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._orders: dict[int, concurrent.futures.Future] = {}

    def __enter__(self) -> ArrayBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __len__(self) -> int:
        return len(self.rows)

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.rows)
        return tf.random.experimental.stateless_shuffle(tf.range(n), seed=[self.seed, epoch]).numpy()

    def epoch_batches(self, epoch: int, batch_size: int) -> Iterator[RatingArrays]:
        future = self._orders.pop(epoch, None) or self._pool.submit(self._order, epoch)
        self._orders[epoch + 1] = self._pool.submit(self._order, epoch + 1)
        order = future.result()
        rows = self.rows
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            yield RatingArrays(rows.user_idx[batch], rows.anime_idx[batch], rows.rating[batch])
