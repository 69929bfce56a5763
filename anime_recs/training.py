"""Training of the embedding model: a fast path and the original's stock path.

Two interchangeable paths train the same model (:func:`anime_recs.model.build_model`)
on the same loss, with the same learning-rate schedule, checkpoints, early
stopping and history:

* ``training_path='keras'``: plain ``model.fit`` on numpy arrays with Keras
  callbacks, stock Adam, no XLA: exactly how the original trained. With an
  ``embeddings_regularizer`` the embedding gradients are dense, so stock Adam
  rewrites every row of both tables (and their moments) at every step; that
  cost grows with the number of users, not the batch.
* ``training_path='fast'`` (default): a custom step with *lazy Adam*
  (:mod:`anime_recs.lazy_adam`). Only the embedding rows present in the batch
  are read and updated in place (value, first and second moment, L2 penalty on
  those rows) by compiled Numba kernels; the prediction head (``Dense``,
  ``BatchNormalization``, activation, loss, Adam on its weights) runs in
  TensorFlow (XLA unless ``jit_compile=false``) on one number per row.
  Lazy Adam is a different optimiser from dense Adam + L2 (rows absent from a batch keep their moments and values),
  so losses are compared on the data term only. It trains on one device:
  given a strategy with more than one replica, or a TPU, ``train_model``
  builds the model inside ``strategy.scope()`` and uses the keras path (or,
  under ``MultiWorkerMirroredStrategy`` with several workers, the same epoch
  loop with stock Adam, :mod:`anime_recs.distributed`), with batch size and
  learning rates scaled by the replica count.

Training rows come as numpy arrays (:class:`~anime_recs.encoding.RatingArrays`)
or as a :class:`BatchSource` that yields them batch by batch, epoch by epoch
(:class:`anime_recs.streaming.StreamedRows` reads them from the parquet).

History columns (one row per epoch, ``epoch`` 0-based): ``loss`` and
``val_loss`` are the loss function alone (the data term, no L2 penalty),
``val_loss`` computed with BatchNormalization in inference mode; one column
per metric and ``val_`` metric; ``val_loss_incl_l2`` is the validation loss
plus the L2 penalty over every row of both tables (what Keras itself reports
as ``val_loss``; ``loss_incl_l2`` is Keras' own training loss, keras path
only); ``lr``; ``seconds`` (wall time of the epoch including validation and
the best-weights checkpoint).

Resuming: the fast path continues exactly where it stopped (per-epoch
stateless shuffle, weights and optimizer state restored); the keras path
restores weights and Adam's state, but Keras draws a new shuffle order.

On CPU, TensorFlow's default allocator returns large freed buffers to the OS
and page-faults them back in at every step; ``TF_CPU_ALLOCATOR_USE_BFC=true``
in the environment *before TensorFlow starts* avoids that (it matters most to
the keras path, whose dense gradients are the size of the tables; see
``bench/train.py``). It is a process setting, so entry points set it, not this
module.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
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

from .encoding import RatingArrays
from .errors import UserInputError
from .model import (
    ANIME_EMBEDDING,
    USER_EMBEDDING,
    ModelParams,
    build_model,
    compile_model,
    is_chief,
    learning_rate,
    scaled_batch_and_lr,
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
            :func:`anime_recs.model.build_model`.
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

    :class:`anime_recs.streaming.StreamedRows` reads them from the preprocessed parquet.
    """

    def __len__(self) -> int:
        """Rows per epoch."""
        ...

    def epoch_batches(self, epoch: int, batch_size: int) -> Iterator[RatingArrays]:
        """The shuffled batches of ``epoch`` (the same for the same epoch, on every worker)."""
        ...


def train_model(
    train: RatingArrays | BatchSource,
    val: RatingArrays,
    n_users: int,
    n_anime: int,
    params: ModelParams,
    strategy: tf.distribute.Strategy | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    verbose: bool = True,
) -> TrainResult:
    """Build and train the embedding model.

    Seeds Python, NumPy and TensorFlow with ``params.seed`` (as Keras advises
    for reproducible fits). Under a strategy with more than one replica, or a
    TPU, the model is built inside ``strategy.scope()`` and trained on the
    keras path (the fast path's scatter updates are single-device), with the
    batch size and learning rates multiplied by the replica count
    (:func:`anime_recs.model.scaled_batch_and_lr`); do not pre-scale them.

    Args:
        train: Encoded training rows, in memory or as a :class:`BatchSource`
            (streamed; its rows are not checked against the table sizes).
        val: Encoded validation rows (the step's ``test_size`` hold-out).
        n_users: Rows of the user table (every ``user_idx`` must be below it).
        n_anime: Rows of the anime table.
        params: Model and training parameters.
        strategy: From :func:`anime_recs.model.select_strategy`; None = default.
        checkpoint_dir: Where ``best.weights.h5``, ``last.weights.h5``, the
            last optimizer state and ``state.json`` are written each epoch;
            None disables checkpoints (and ``resume``). Only the chief worker
            writes here (:func:`anime_recs.model.is_chief`); other workers of
            a multi-worker cluster write to a temporary folder.
        resume: Continue from the last completed epoch in ``checkpoint_dir``.
        on_epoch_end: Called as ``on_epoch_end(epoch, row)`` after every epoch
            with that epoch's history row (e.g. to log to MLflow).
        verbose: Print one progress line per epoch.

    Returns:
        The trained model with the best epoch's weights, and its history.

    Raises:
        UserInputError: Inconsistent data, an unknown ``monitor``, or a
            checkpoint that does not match this run.
    """
    with contextlib.ExitStack() as stack:
        if checkpoint_dir is not None and not is_chief(strategy):
            checkpoint_dir = _worker_scratch(stack, Path(checkpoint_dir), resume)
        return _train_model(train, val, n_users, n_anime, params, strategy, checkpoint_dir, resume, on_epoch_end,
                            verbose)


def _worker_scratch(stack: contextlib.ExitStack, checkpoint_dir: Path, resume: bool) -> Path:
    """A temporary checkpoint folder for a non-chief worker (TF's convention: only the chief writes).

    A resumed non-chief worker starts from a copy of the chief's checkpoint, so every worker resumes
    from the same epoch (they must take the same number of steps for the collectives to line up).
    """
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="anime-recs-worker-")))
    if resume and checkpoint_dir.is_dir():
        shutil.copytree(checkpoint_dir, scratch, dirs_exist_ok=True)
    logger.info("not the chief worker: checkpoints go to %s", scratch)
    return scratch


def _train_model(
    train: RatingArrays | BatchSource,
    val: RatingArrays,
    n_users: int,
    n_anime: int,
    params: ModelParams,
    strategy: tf.distribute.Strategy | None,
    checkpoint_dir: Path | None,
    resume: bool,
    on_epoch_end: EpochCallback | None,
    verbose: bool,
) -> TrainResult:
    """:func:`train_model` once the checkpoint folder is settled."""
    if isinstance(train, RatingArrays):
        _check_data(train, "training", n_users, n_anime)
    _check_data(val, "validation", n_users, n_anime)
    keras.utils.set_random_seed(params.seed)

    replicas = int(strategy.num_replicas_in_sync) if strategy is not None else 1
    is_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    path = params.training_path
    if replicas > 1 or is_tpu:
        params = scaled_batch_and_lr(params, replicas)
        # Keras 3.15's fit cannot run MultiWorkerMirroredStrategy with several workers (it averages
        # scalar logs with reduce(axis=0)), so the workers run their own loop with stock Adam.
        path = "mirrored" if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else "keras"
        logger.info(
            "%d replicas: %s path, batch %d, lr %.3g..%.3g", replicas, path, params.batch_size, params.min_lr,
            params.max_lr,
        )
    elif path == "fast":
        reason = _fast_path_unsupported(params)
        if reason:
            logger.warning("training_path='fast' does not support %s; using the keras path", reason)
            path = "keras"
    _check_monitor(params)

    store = _CheckpointStore(Path(checkpoint_dir), path, n_users, n_anime, params) if checkpoint_dir else None
    state = store.read_state() if (store is not None and resume) else None
    if resume and store is None:
        logger.warning("resume=True without a checkpoint_dir: training from scratch")

    def scope() -> contextlib.AbstractContextManager:
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        model = build_model(n_users, n_anime, params, sync_batch_norm=replicas > 1)
        if path == "keras" and is_tpu:
            compile_model(model, params, jit_compile="auto")  # TPUs always run XLA

    tracker = _EpochTracker(params, store, state, on_epoch_end, verbose)
    if state is not None and (state.get("stopped_early") or int(state["epoch"]) + 1 >= params.epochs):
        logger.info("the run in %s already finished: loading its best weights", checkpoint_dir)
        if path != "fast":
            model.optimizer.build(model.trainable_variables)  # the file carries Adam's slots
        model.load_weights(store.path(BEST_WEIGHTS))  # type: ignore[union-attr]
        return tracker.result(model)

    if path == "keras":
        from .keras_fit import train_keras

        with scope():
            train_keras(model, train, val, params, tracker)
    elif path == "mirrored":
        from .distributed import MirroredTrainer

        MirroredTrainer(model, params, strategy).fit(train, val, tracker)  # type: ignore[arg-type]
    else:
        from .lazy_adam import LazyAdamTrainer

        LazyAdamTrainer(model, params).fit(train, val, tracker)
    return tracker.result(model)


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------


def _check_data(data: RatingArrays, name: str, n_users: int, n_anime: int) -> None:
    """Raise a one-line UserInputError if ``data`` cannot be trained on."""
    if len(data) == 0:
        hint = "; set model.test_size > 0" if name == "validation" else ""
        raise UserInputError(f"the {name} set is empty{hint}")
    if not (len(data.user_idx) == len(data.anime_idx) == len(data.rating)):
        raise UserInputError(f"the {name} arrays have different lengths; build them with RatingArrays.take")
    for values, limit, kind in ((data.user_idx, n_users, "user"), (data.anime_idx, n_anime, "anime")):
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= limit:
            raise UserInputError(
                f"{name} {kind} indices span {low}..{high} but the model has {limit} {kind} rows; "
                "encode ids with the same IdEncoder that sized the model"
            )


def _check_monitor(params: ModelParams) -> None:
    names = ["loss", "val_loss", "val_loss_incl_l2"] + [
        prefix + m for m in params.model_metrics for prefix in ("", "val_")
    ]
    if params.monitor not in names:
        raise UserInputError(f"model.monitor={params.monitor!r} is not a history column; choose from: {', '.join(names)}")


def _fast_path_unsupported(params: ModelParams) -> str:
    """Why the fast path cannot run ``params`` ('' when it can)."""
    if params.optimizer.lower() != "adam":
        return f"optimizer {params.optimizer!r} (it implements lazy Adam only)"
    for name in (params.model_loss, *params.model_metrics):
        if _loss_like(name) is None:
            return f"loss/metric {name!r} (only per-sample Keras loss functions such as mse, mae)"
    return ""


def _loss_like(name: str) -> Callable | None:
    """The per-sample Keras function for a loss or metric name, or None."""
    try:
        fn = keras.losses.get(name)
    except (ValueError, TypeError):
        return None
    return fn if callable(fn) and not isinstance(fn, type) else None


# --------------------------------------------------------------------------
# Checkpoints and per-epoch bookkeeping shared by both paths
# --------------------------------------------------------------------------


class _CheckpointStore:
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


class _EpochTracker:
    """History rows, best value, early stopping and checkpoints, epoch by epoch.

    The fast path uses all of it; the keras path lets Keras' EarlyStopping and
    ModelCheckpoint decide and uses this for history, state and last checkpoint.
    """

    def __init__(
        self,
        params: ModelParams,
        store: _CheckpointStore | None,
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


def _l2_penalty(model: keras.Model, l2: float) -> float:
    """The L2 term Keras adds to its losses: over every row of both tables."""
    total = 0.0
    for name in (USER_EMBEDDING, ANIME_EMBEDDING):
        table = model.get_layer(name).embeddings.value
        total += float(tf.reduce_sum(tf.square(table)))
    return l2 * total


# --------------------------------------------------------------------------
# The epoch loop of the custom paths (fast and mirrored)
# --------------------------------------------------------------------------


class _CustomTrainer:
    """What the custom training loops share: loss and metric sums, validation, and the epoch loop.

    Subclasses train the Keras model's own variables in :meth:`step` (adding the batch's loss and
    metric sums and row count to ``train_sums``), evaluate a slice of the validation rows in
    ``_eval`` and expose their optimizer state for checkpoints.
    """

    def __init__(self, model: keras.Model, params: ModelParams) -> None:
        self.model = model
        self.params = params
        self.loss_fn = _loss_like(params.model_loss)
        self.metric_fns = [(name, _loss_like(name)) for name in params.model_metrics]
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

    def fit(self, train: RatingArrays | BatchSource, val: RatingArrays, tracker: _EpochTracker) -> None:
        """Train epoch by epoch with the tracker's early stopping, checkpoints and history."""
        params = self.params
        saved = tracker.restore_for_resume(self.model)
        if saved is not None:
            self.load_from_model()
            self.load_optimizer_state(saved)

        names = ["loss", *(name for name, _ in self.metric_fns)]
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(_ArrayBatches(train, params.seed)) if isinstance(train, RatingArrays) else train
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
                row["val_loss_incl_l2"] = row["val_loss"] + _l2_penalty(self.model, params.l2_reg_factor)
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


class _ArrayBatches:
    """In-memory training rows as a :class:`BatchSource`: a stateless shuffle per epoch.

    Stateless, so a resumed run sees the same order epoch by epoch. The next epoch's order is drawn
    on a worker thread while this epoch trains (TF ops release the GIL), so it is off the critical
    path; batches are picked from the caller's arrays by that order (no shuffled copy of the rows).
    """

    def __init__(self, rows: RatingArrays, seed: int) -> None:
        self.rows, self.seed = rows, seed
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._orders: dict[int, concurrent.futures.Future] = {}

    def __enter__(self) -> _ArrayBatches:
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
