"""The keras training path: the original's plain ``model.fit`` with stock Adam and Keras callbacks.

One of the paths of :func:`anime_recs.models.network.training.train_model` (``training_path='keras'``, and every
strategy with several replicas except multi-worker, including TPUs). Keras' EarlyStopping and
ModelCheckpoint decide; :class:`anime_recs.models.network.trainer.EpochTracker` keeps the history, the state
file and the last checkpoint, as on the other paths.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from anime_recs.core.encoding import RatingArrays
from anime_recs.models.network.architecture import ModelParams, learning_rate
from anime_recs.models.network.trainer import BEST_WEIGHTS, BatchSource, EpochTracker

# Keras' ModelCheckpoint writes here; the bookkeeping callback renames it to
# BEST_WEIGHTS so readers never see a half-written file.
_BEST_TMP = "best.tmp.weights.h5"




def train_keras(
    model: keras.Model, train: RatingArrays | BatchSource, val: RatingArrays, params: ModelParams, tracker: EpochTracker
) -> None:
    """``model.fit`` on numpy arrays with stock callbacks, as the original did (streamed rows: a tf.data pipeline)."""
    # Built up front so weight files (which carry Adam's slots) load completely.
    model.optimizer.build(model.trainable_variables)
    saved_optimizer = tracker.restore_for_resume(model)
    if saved_optimizer is not None:
        model.optimizer.load_own_variables(saved_optimizer)
    _build_before_fit(model, val)

    checkpoint_callbacks: list[keras.callbacks.Callback] = []
    if tracker.store is not None:
        checkpoint_callbacks.append(
            keras.callbacks.ModelCheckpoint(
                filepath=str(tracker.store.path(_BEST_TMP)),
                monitor=params.monitor,
                mode=params.mode,
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=tracker.best,
            )
        )
    early = _ResumableEarlyStopping(tracker, monitor=params.monitor, mode=params.mode, patience=params.patience)
    callbacks = [
        _HonestLogs(),  # first, so the callbacks below see the data-term val_loss
        keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate(epoch, params)),
        *checkpoint_callbacks,
        early,
        _KerasBookkeeper(tracker, early),
    ]
    if isinstance(train, RatingArrays):
        data: dict[str, Any] = dict(
            x={"user": train.user_idx.reshape(-1, 1), "anime": train.anime_idx.reshape(-1, 1)},
            y=train.rating.reshape(-1, 1), batch_size=params.batch_size, shuffle=True,
        )
    else:
        data = dict(x=_batch_dataset(train, params.batch_size, tracker.start_epoch), shuffle=False,
                    steps_per_epoch=math.ceil(len(train) / params.batch_size))
    model.fit(
        **data,
        epochs=params.epochs,
        initial_epoch=tracker.start_epoch,
        validation_data=(
            {"user": val.user_idx.reshape(-1, 1), "anime": val.anime_idx.reshape(-1, 1)},
            val.rating.reshape(-1, 1),
        ),
        callbacks=callbacks,
        verbose=0,
    )


def _batch_dataset(source: BatchSource, batch_size: int, first_epoch: int) -> tf.data.Dataset:
    """``source`` as an endless ``tf.data.Dataset`` for ``fit``: epoch after epoch of its batches.

    Every epoch has ``ceil(len(source) / batch_size)`` batches, which ``fit`` is told as ``steps_per_epoch``.
    """
    epochs = itertools.count(first_epoch)

    def batches() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        for batch in source.epoch_batches(next(epochs), batch_size):
            yield {"user": batch.user_idx[:, None], "anime": batch.anime_idx[:, None]}, batch.rating[:, None]

    ids = tf.TensorSpec([None, 1], tf.int32)
    signature = ({"user": ids, "anime": ids}, tf.TensorSpec([None, 1], tf.float32))
    return tf.data.Dataset.from_generator(batches, output_signature=signature).repeat().prefetch(2)


def _build_before_fit(model: keras.Model, sample_rows: RatingArrays) -> None:
    """Build the compiled loss and metrics from a sample batch, so ``fit`` need not.

    Keras 3.15 bug: under a strategy, ``fit`` first builds them from a batch it averages across
    replicas with ``strategy.reduce``, which with several workers of ``MultiWorkerMirroredStrategy``
    fails on the dict of inputs ("Attempt to convert a value ({'user': PerReplica...) to a Tensor").
    Building here, in the strategy's scope, and skipping that step avoids the reduce.
    """
    sample = slice(0, min(len(sample_rows), 2))
    batch = ({"user": sample_rows.user_idx[sample, None], "anime": sample_rows.anime_idx[sample, None]},
             sample_rows.rating[sample, None])
    model._symbolic_build(data_batch=batch)  # noqa: SLF001 - see the docstring
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None  # noqa: SLF001


class _HonestLogs(keras.callbacks.Callback):
    """Rename Keras' logs so ``loss``/``val_loss`` mean the data term.

    Keras' ``loss`` adds the L2 penalty over all rows of both tables; the
    compiled ``data_loss`` metric is the loss function alone.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for prefix in ("", "val_"):
            if prefix + "data_loss" in logs:
                logs[prefix + "loss_incl_l2"] = logs[prefix + "loss"]
                logs[prefix + "loss"] = logs.pop(prefix + "data_loss")


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Stock EarlyStopping that starts from a resumed run's best/wait."""

    def __init__(self, tracker: EpochTracker, **kwargs: Any) -> None:
        super().__init__(restore_best_weights=True, **kwargs)
        self._tracker = tracker

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self._tracker.resumed:
            self.best = self._tracker.best
            self.best_epoch = self._tracker.best_epoch
            self.wait = self._tracker.wait
            self.best_weights = self._tracker.best_weights


class _KerasBookkeeper(keras.callbacks.Callback):
    """Last in the list: atomic best file, history row, state, progress line."""

    def __init__(self, tracker: EpochTracker, early: _ResumableEarlyStopping) -> None:
        super().__init__()
        self._tracker = tracker
        self._early = early
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        tracker = self._tracker
        store = tracker.store
        if store is not None and store.path(_BEST_TMP).exists():
            os.replace(store.path(_BEST_TMP), store.path(BEST_WEIGHTS))
        seconds = time.perf_counter() - self._started
        # Mirror EarlyStopping's decision so the state file can resume it.
        tracker.best = None if self._early.best is None else float(self._early.best)
        tracker.best_epoch = int(self._early.best_epoch)
        tracker.wait = int(self._early.wait)
        tracker.stopped_early = bool(self.model.stop_training)
        row = {k: v for k, v in logs.items() if k != "learning_rate"}
        row["lr"] = learning_rate(epoch, tracker.params)
        row["seconds"] = seconds
        finished = tracker.stopped_early or epoch + 1 >= tracker.params.epochs

        tracker.finish_epoch(epoch, row, self.model, lambda: keras_optimizer_state(self.model), finished)


def keras_optimizer_state(model: keras.Model) -> dict[str, Callable[[], np.ndarray]]:
    """The stock Keras optimizer's variables in the form ``CheckpointStore.save_arrays`` takes."""
    store: dict[str, np.ndarray] = {}
    model.optimizer.save_own_variables(store)
    return {key: (lambda value=value: value) for key, value in store.items()}
