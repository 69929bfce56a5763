"""The embedding model of the neural_network step: parameters, architecture,
learning-rate schedule and the choice of distribution strategy.

The architecture is the original project's, unchanged: a user embedding and
an anime embedding, their normalised dot product (the cosine of the two
vectors), ``Dense(1)``, ``BatchNormalization`` and an activation. Training
lives in :mod:`anime_recs.models.network.training`; reading the trained weights back out
lives in :mod:`anime_recs.models.network.embeddings`.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from anime_recs.core.errors import UserInputError

logger = logging.getLogger(__name__)

#: Layer names used by :func:`build_model`; training and weight extraction
#: look layers up by these names.
USER_EMBEDDING = "user_embedding"
ANIME_EMBEDDING = "anime_embedding"
DOT = "dot_product"
DENSE = "dense"
BATCH_NORM = "batch_normalization"
ACTIVATION = "activation"

TRAINING_PATHS = ("fast", "keras")


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of the model and its training (the config's ``model`` group).

    Attributes:
        embedding_size: Length of every user and anime vector.
        l2_reg_factor: L2 factor of both embedding tables.
        kernel_initializer: Keras initializer name of the ``Dense`` kernel.
        activation_function: Keras activation after ``BatchNormalization``.
        model_loss: Keras loss name.
        optimizer: Keras optimizer name (the fast path always uses lazy Adam).
        model_metrics: Keras metric names reported per epoch.
        batch_size: Rows per training step (per replica count 1).
        epochs: Maximum number of epochs.
        start_lr: Learning rate of epoch 0.
        min_lr: Floor that the exponential decay approaches.
        max_lr: Learning rate reached after ``rampup_epochs``.
        rampup_epochs: Epochs of linear ramp from ``start_lr`` to ``max_lr``.
        sustain_epochs: Epochs held at ``max_lr`` after the ramp.
        exp_decay: Per-epoch decay factor of ``lr - min_lr`` after the hold.
        monitor: History column watched by checkpointing and early stopping.
        mode: ``'min'`` or ``'max'``: which direction of ``monitor`` is better.
        patience: Epochs without improvement before training stops.
        training_path: ``'fast'`` (lazy Adam on the touched embedding rows, in
            place, :mod:`anime_recs.models.network.lazy_adam`) or ``'keras'`` (stock ``model.fit``, stock
            Adam, no XLA: exactly how the original trained).
        jit_compile: Whether the fast path compiles its prediction head with XLA.
        seed: Seed of weight initialisation and shuffling.
    """

    embedding_size: int = 128
    l2_reg_factor: float = 1e-6
    kernel_initializer: str = "he_normal"
    activation_function: str = "sigmoid"
    model_loss: str = "binary_crossentropy"
    optimizer: str = "Adam"
    model_metrics: tuple[str, ...] = ("mse", "mae")
    batch_size: int = 10000
    epochs: int = 20
    start_lr: float = 1e-5
    min_lr: float = 1e-5
    max_lr: float = 5e-5
    rampup_epochs: int = 5
    sustain_epochs: int = 0
    exp_decay: float = 0.8
    monitor: str = "val_loss"
    mode: str = "min"
    patience: int = 3
    training_path: str = "fast"
    jit_compile: bool = True
    seed: int = 42

    def __post_init__(self) -> None:
        positive = ("embedding_size", "batch_size", "epochs")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserInputError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rampup_epochs", "sustain_epochs", "patience"):
            if getattr(self, name) < 0:
                raise UserInputError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("start_lr", "min_lr", "max_lr", "l2_reg_factor"):
            if getattr(self, name) < 0:
                raise UserInputError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.exp_decay <= 1:
            raise UserInputError(f"model.exp_decay must be in (0, 1], got {self.exp_decay}")
        if self.mode not in ("min", "max"):
            raise UserInputError(f"model.mode must be 'min' or 'max', got {self.mode!r}")
        if self.training_path not in TRAINING_PATHS:
            raise UserInputError(
                f"model.training_path must be one of {', '.join(TRAINING_PATHS)}, got {self.training_path!r}"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "ModelParams":
        """Build from a config mapping, ignoring keys that are not fields.

        The config's ``model`` group also holds file names and switches that
        belong to the step, so unknown keys are skipped, not rejected. Values
        are coerced to the field types (strings from ``mlflow run -P`` become
        numbers, lists from Hydra become tuples, ``"false"`` becomes False).

        Args:
            mapping: Any mapping, e.g. ``OmegaConf.to_container(cfg.model)``.

        Returns:
            The parameters, defaults filling the missing keys.

        Raises:
            UserInputError: If a value cannot be converted to its field type.
        """
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in mapping:
                continue
            kwargs[field.name] = _coerce(field.name, mapping[field.name], hints[field.name])
        ignored = sorted(set(mapping) - set(kwargs))
        if ignored:
            logger.debug("ModelParams ignores config keys: %s", ", ".join(map(str, ignored)))
        return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` to the type ``hint`` of field ``name``."""
    try:
        if hint is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "1", "yes", "y", "on"):
                    return True
                if lowered in ("false", "0", "no", "n", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
        if typing.get_origin(hint) is tuple:
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(str(item) for item in value)
    except (TypeError, ValueError):
        raise UserInputError(f"model.{name}={value!r} is not a valid {getattr(hint, '__name__', hint)}") from None
    return value


def learning_rate(epoch: int, params: ModelParams) -> float:
    """Learning rate of a (0-based) epoch: linear ramp-up, hold, exponential decay.

    Matches the original's ``lrfn`` and its recorded history: 1e-5 rising to
    5e-5 at epoch 5, then ``(lr - 1e-5) * 0.8`` per epoch.

    Args:
        epoch: 0-based epoch index.
        params: Supplies start/min/max lr, ramp-up, sustain and decay.

    Returns:
        The learning rate for that epoch.
    """
    if epoch < params.rampup_epochs:
        return (params.max_lr - params.start_lr) / params.rampup_epochs * epoch + params.start_lr
    if epoch < params.rampup_epochs + params.sustain_epochs:
        return params.max_lr
    decay_epochs = epoch - params.rampup_epochs - params.sustain_epochs
    return (params.max_lr - params.min_lr) * params.exp_decay**decay_epochs + params.min_lr


def _seeded_initializer(name: str, seed: int) -> keras.initializers.Initializer:
    """A Keras initializer by name, seeded when it accepts a seed."""
    try:
        init = keras.initializers.get(name)
    except ValueError:
        raise UserInputError(
            f"unknown model.kernel_initializer {name!r}; use a Keras initializer name such as "
            "'he_normal', 'glorot_uniform' or 'random_normal'"
        ) from None
    config = init.get_config()
    if "seed" in config:
        config["seed"] = seed
        init = init.__class__.from_config(config)
    return init


def build_model(n_users: int, n_anime: int, params: ModelParams, sync_batch_norm: bool = False) -> keras.Model:
    """Build and compile the original embedding model.

    ``user``/``anime`` int inputs of shape ``(1,)`` → ``Embedding`` (with L2)
    → ``Dot(normalize=True, axes=2)`` → ``Flatten`` → ``Dense(1)`` →
    ``BatchNormalization`` → ``Activation``. Initial weights depend only on
    ``params.seed``, so both training paths start from the same point.

    Args:
        n_users: Rows of the user embedding table.
        n_anime: Rows of the anime embedding table.
        params: Architecture, loss, optimizer and metrics.
        sync_batch_norm: Normalise with the statistics of the global batch across replicas (for
            training under a strategy with several replicas: the same maths as one device, and
            moving statistics that stay identical on every worker).

    Returns:
        A compiled ``keras.Model`` with the optimizer's learning rate set to
        ``learning_rate(0, params)`` and no XLA (the fast path does its own).

    Raises:
        UserInputError: For empty tables or unknown Keras names.
    """
    if n_users < 1 or n_anime < 1:
        raise UserInputError(f"cannot build a model for {n_users} users and {n_anime} anime; both must be >= 1")
    # Distinct seeds: the same seed would give both tables the same leading rows.
    user_init = keras.initializers.RandomUniform(-0.05, 0.05, seed=params.seed)
    anime_init = keras.initializers.RandomUniform(-0.05, 0.05, seed=params.seed + 1)
    kernel_init = _seeded_initializer(params.kernel_initializer, params.seed + 2)

    user = keras.Input(shape=(1,), dtype="int32", name="user")
    anime = keras.Input(shape=(1,), dtype="int32", name="anime")
    user_vec = keras.layers.Embedding(
        n_users,
        params.embedding_size,
        embeddings_initializer=user_init,
        embeddings_regularizer=keras.regularizers.L2(params.l2_reg_factor),
        name=USER_EMBEDDING,
    )(user)
    anime_vec = keras.layers.Embedding(
        n_anime,
        params.embedding_size,
        embeddings_initializer=anime_init,
        embeddings_regularizer=keras.regularizers.L2(params.l2_reg_factor),
        name=ANIME_EMBEDDING,
    )(anime)
    merged = keras.layers.Dot(axes=2, normalize=True, name=DOT)([user_vec, anime_vec])
    merged = keras.layers.Flatten(name="flatten")(merged)
    out = keras.layers.Dense(1, kernel_initializer=kernel_init, name=DENSE)(merged)
    out = keras.layers.BatchNormalization(synchronized=sync_batch_norm, name=BATCH_NORM)(out)
    try:
        out = keras.layers.Activation(params.activation_function, name=ACTIVATION)(out)
    except ValueError:
        raise UserInputError(
            f"unknown model.activation_function {params.activation_function!r}; "
            "use a Keras activation such as 'sigmoid' or 'linear'"
        ) from None
    model = keras.Model(inputs=[user, anime], outputs=out, name="anime_nn")
    compile_model(model, params)
    return model


def make_optimizer(params: ModelParams, lr: float | None = None) -> keras.optimizers.Optimizer:
    """The Keras optimizer named by ``params.optimizer`` with learning rate ``lr``.

    Raises:
        UserInputError: If Keras does not know the name.
    """
    try:
        optimizer = keras.optimizers.get(params.optimizer)
    except ValueError:
        raise UserInputError(
            f"unknown model.optimizer {params.optimizer!r}; use a Keras optimizer name such as 'Adam'"
        ) from None
    optimizer.learning_rate = learning_rate(0, params) if lr is None else lr
    return optimizer


def compile_model(model: keras.Model, params: ModelParams, jit_compile: bool | str = False) -> None:
    """Compile ``model`` with the configured loss, optimizer and metrics.

    Besides ``model_metrics`` a ``data_loss`` metric (the loss function alone,
    without the embeddings' L2 penalty) is compiled in, because Keras' own
    ``loss`` adds the penalty over every row of both tables and so cannot be
    compared with the fast path's loss.

    Args:
        model: The model from :func:`build_model`.
        params: Loss, optimizer and metric names.
        jit_compile: Passed to ``Model.compile``; False reproduces the original.

    Raises:
        UserInputError: If Keras does not know the loss name.
    """
    try:
        loss_fn = keras.losses.get(params.model_loss)
    except ValueError:
        loss_fn = None
    if not callable(loss_fn):
        raise UserInputError(
            f"unknown model.model_loss {params.model_loss!r}; use a Keras loss such as 'binary_crossentropy' or 'mse'"
        )
    metrics: list[Any] = list(params.model_metrics)
    metrics.append(keras.metrics.MeanMetricWrapper(loss_fn, name="data_loss"))
    model.compile(loss=params.model_loss, optimizer=make_optimizer(params), metrics=metrics, jit_compile=jit_compile)


def select_strategy(tpu_init: bool, tpu_address: str = "", multi_worker: bool = False) -> tf.distribute.Strategy:
    """Pick the distribution strategy to build and train the model under.

    Order: a TPU if ``tpu_init``; ``MultiWorkerMirroredStrategy`` if
    ``multi_worker`` (every worker needs the ``TF_CONFIG`` environment
    variable describing the cluster and its own index, and runs the same
    script; without ``TF_CONFIG`` it is a single local worker); all local GPUs
    through ``MirroredStrategy`` when there are more than one; otherwise the
    default (single-device) strategy.

    Args:
        tpu_init: The config's ``model.TPU_init``.
        tpu_address: The TPU name or ``grpc://host:port``; ``''`` lets the
            resolver look in the environment (Colab, Cloud TPU VM), ``'local'``
            means a TPU attached to this host.
        multi_worker: Train across the workers listed in ``TF_CONFIG``.

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        UserInputError: If ``tpu_init`` is true and no TPU can be reached.
    """
    if tpu_init:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        # Each missing-TPU situation raises a different type (ValueError,
        # NotFoundError, RuntimeError, ...); all mean the same thing here.
        except Exception as exc:  # noqa: BLE001
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserInputError(
                f"model.TPU_init is true but no TPU was found at {tpu_address!r} ({type(exc).__name__}: {reason}); "
                "set model.TPU_init=false or model.TPU_address=<tpu name, 'local' or grpc://host:port>"
            ) from None
        strategy = tf.distribute.TPUStrategy(resolver)
        logger.info("TPU strategy with %d replicas", strategy.num_replicas_in_sync)
        return strategy
    if multi_worker:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logger.info("multi-worker strategy with %d replicas", strategy.num_replicas_in_sync)
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        logger.info("mirrored strategy over %d GPUs", len(gpus))
        return strategy
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process publishes: the only process, the ``chief`` task, or worker 0 when there is no chief.

    TensorFlow's multi-worker convention: every worker trains (the collectives need them all), but
    only the chief writes checkpoints and artifacts; the others write to scratch space.

    Args:
        strategy: From :func:`select_strategy`; None means a single process.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or not task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if task_type == "chief":
        return True
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    return task_type == "worker" and int(resolver.task_id or 0) == 0 and not has_chief


def scaled_batch_and_lr(params: ModelParams, replicas: int) -> ModelParams:
    """Scale batch size and learning rates by the replica count.

    Each replica sees ``batch_size`` rows, so the global batch grows with the
    replica count and the learning rates grow with it (the linear scaling
    rule). The original computed these values and then trained without them.

    Args:
        params: Single-device parameters.
        replicas: ``strategy.num_replicas_in_sync``.

    Returns:
        New parameters; the input is unchanged.

    Raises:
        UserInputError: If ``replicas`` < 1.
    """
    if replicas < 1:
        raise UserInputError(f"replica count must be >= 1, got {replicas}")
    return dataclasses.replace(
        params,
        batch_size=params.batch_size * replicas,
        start_lr=params.start_lr * replicas,
        min_lr=params.min_lr * replicas,
        max_lr=params.max_lr * replicas,
    )
