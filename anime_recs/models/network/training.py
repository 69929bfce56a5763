"""Training of the embedding model: a fast path and the original's stock path.

Two interchangeable paths train the same model (:func:`anime_recs.models.network.architecture.build_model`)
on the same loss, with the same learning-rate schedule, checkpoints, early
stopping and history:

* ``training_path='keras'``: plain ``model.fit`` on numpy arrays with Keras
  callbacks, stock Adam, no XLA: exactly how the original trained. With an
  ``embeddings_regularizer`` the embedding gradients are dense, so stock Adam
  rewrites every row of both tables (and their moments) at every step; that
  cost grows with the number of users, not the batch.
* ``training_path='fast'`` (default): a custom step with *lazy Adam*
  (:mod:`anime_recs.models.network.lazy_adam`). Only the embedding rows present in the batch
  are read and updated in place (value, first and second moment, L2 penalty on
  those rows) by compiled Numba kernels; the prediction head (``Dense``,
  ``BatchNormalization``, activation, loss, Adam on its weights) runs in
  TensorFlow (XLA unless ``jit_compile=false``) on one number per row.
  Lazy Adam is a different optimiser from dense Adam + L2 (rows absent from a batch keep their moments and values),
  so losses are compared on the data term only. It trains on one device:
  given a strategy with more than one replica, or a TPU, ``train_model``
  builds the model inside ``strategy.scope()`` and uses the keras path (or,
  under ``MultiWorkerMirroredStrategy`` with several workers, the same epoch
  loop with stock Adam, :mod:`anime_recs.models.network.distributed`), with batch size and
  learning rates scaled by the replica count.

Training rows come as numpy arrays (:class:`~anime_recs.core.encoding.RatingArrays`)
or as a :class:`BatchSource` that yields them batch by batch, epoch by epoch
(:class:`anime_recs.data.streaming.StreamedRows` reads them from the parquet).

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

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from anime_recs.core.encoding import RatingArrays
from anime_recs.core.errors import UserInputError
from anime_recs.models.network.architecture import (
    ModelParams,
    build_model,
    compile_model,
    is_chief,
    scaled_batch_and_lr,
)

from anime_recs.models.network.trainer import (
    BEST_WEIGHTS,
    BatchSource,
    CheckpointStore,
    EpochCallback,
    EpochTracker,
    TrainResult,
    loss_like,
)

logger = logging.getLogger(__name__)





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
    (:func:`anime_recs.models.network.architecture.scaled_batch_and_lr`); do not pre-scale them.

    Args:
        train: Encoded training rows, in memory or as a :class:`BatchSource`
            (streamed; its rows are not checked against the table sizes).
        val: Encoded validation rows (the step's ``test_size`` hold-out).
        n_users: Rows of the user table (every ``user_idx`` must be below it).
        n_anime: Rows of the anime table.
        params: Model and training parameters.
        strategy: From :func:`anime_recs.models.network.architecture.select_strategy`; None = default.
        checkpoint_dir: Where ``best.weights.h5``, ``last.weights.h5``, the
            last optimizer state and ``state.json`` are written each epoch;
            None disables checkpoints (and ``resume``). Only the chief worker
            writes here (:func:`anime_recs.models.network.architecture.is_chief`); other workers of
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

    store = CheckpointStore(Path(checkpoint_dir), path, n_users, n_anime, params) if checkpoint_dir else None
    state = store.read_state() if (store is not None and resume) else None
    if resume and store is None:
        logger.warning("resume=True without a checkpoint_dir: training from scratch")

    def scope() -> contextlib.AbstractContextManager:
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        model = build_model(n_users, n_anime, params, sync_batch_norm=replicas > 1)
        if path == "keras" and is_tpu:
            compile_model(model, params, jit_compile="auto")  # TPUs always run XLA

    tracker = EpochTracker(params, store, state, on_epoch_end, verbose)
    if state is not None and (state.get("stopped_early") or int(state["epoch"]) + 1 >= params.epochs):
        logger.info("the run in %s already finished: loading its best weights", checkpoint_dir)
        if path != "fast":
            model.optimizer.build(model.trainable_variables)  # the file carries Adam's slots
        model.load_weights(store.path(BEST_WEIGHTS))  # type: ignore[union-attr]
        return tracker.result(model)

    if path == "keras":
        from anime_recs.models.network.keras_fit import train_keras

        with scope():
            train_keras(model, train, val, params, tracker)
    elif path == "mirrored":
        from anime_recs.models.network.distributed import MirroredTrainer

        MirroredTrainer(model, params, strategy).fit(train, val, tracker)  # type: ignore[arg-type]
    else:
        from anime_recs.models.network.lazy_adam import LazyAdamTrainer

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
        if loss_like(name) is None:
            return f"loss/metric {name!r} (only per-sample Keras loss functions such as mse, mae)"
    return ""

