"""Training across the workers of a ``MultiWorkerMirroredStrategy``: a custom loop with stock Adam.

Every worker runs the same script with its own ``TF_CONFIG`` and draws the same global batches
(same seed, same order); each replica trains on its slice of every global batch
(:meth:`MirroredTrainer.step`) and Keras' optimizer sums the gradients across replicas before the
identical update, so all workers hold the same weights. The loss of a replica is its slice's loss
sum divided by the global batch size plus its share of the L2 penalty, so the summed gradient is
exactly the single-device gradient of the global batch; BatchNormalization is built synchronised
(``train_model`` passes ``sync_batch_norm``), so it normalises with the global batch's statistics
and its moving statistics stay identical on every worker.

The epoch loop, validation, early stopping and checkpoints are the fast path's
(:class:`anime_recs.models.network.trainer.CustomTrainer`); only the chief worker writes checkpoints
(:func:`anime_recs.models.network.training.train_model` gives the others a temporary folder).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from anime_recs.core.encoding import RatingArrays
from anime_recs.models.network.architecture import ModelParams
from anime_recs.models.network.keras_fit import keras_optimizer_state
from anime_recs.models.network.trainer import CustomTrainer

logger = logging.getLogger(__name__)


class MirroredTrainer(CustomTrainer):
    """Stock Adam over the replicas of ``strategy``; the model must have been built in its scope.

    Args:
        model: From :func:`anime_recs.models.network.architecture.build_model`, built and compiled under ``strategy.scope()``.
        params: With batch size and learning rates already scaled to the global batch.
        strategy: A ``tf.distribute`` strategy (``MultiWorkerMirroredStrategy`` across machines).
    """

    def __init__(self, model: keras.Model, params: ModelParams, strategy: tf.distribute.Strategy) -> None:
        super().__init__(model, params)
        self.strategy = strategy
        self.replicas = int(strategy.num_replicas_in_sync)
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        self._train = tf.function(self._train_fn)
        vec = tf.TensorSpec([None], tf.int32)
        self._eval = tf.function(
            self._eval_fn,
            input_signature=[vec, vec, tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32),
                             tf.TensorSpec([], tf.int32)],
        )

    def _replica_step(self, users: tf.Tensor, anime: tf.Tensor, ratings: tf.Tensor, global_rows: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            pred = self.model({"user": users[:, None], "anime": anime[:, None]}, training=True)
            _, sums = self._sums(ratings, pred)
            loss = sums[0] / global_rows + tf.add_n(self.model.losses) / self.replicas
        variables = self.model.trainable_variables
        self.model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return tf.concat([sums, [tf.cast(tf.shape(ratings)[0], tf.float32)]], 0)

    def _train_fn(self, parts, global_rows):  # type: ignore[no-untyped-def]
        per_replica = self.strategy.run(self._replica_step, args=(*parts, global_rows))
        sums = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        self.train_sums.assign_add(tf.cast(sums, tf.float64))

    def step(self, batch: RatingArrays, lr: tf.Tensor) -> None:
        """Train every replica on its slice of the global ``batch`` (every worker passes the same batch)."""
        n = len(batch)
        if n < self.replicas:  # a replica with no rows would normalise an empty batch
            return
        bounds = np.arange(self.replicas + 1) * n // self.replicas

        def replica_slice(context: tf.distribute.InputReplicaContext) -> tuple[tf.Tensor, ...]:
            part = slice(int(bounds[context.replica_id_in_sync_group]), int(bounds[context.replica_id_in_sync_group + 1]))
            return (tf.constant(batch.user_idx[part], tf.int32), tf.constant(batch.anime_idx[part], tf.int32),
                    tf.constant(batch.rating[part], tf.float32))

        self.model.optimizer.learning_rate.assign(lr)
        parts = self.strategy.experimental_distribute_values_from_function(replica_slice)
        self._train(parts, tf.constant(n, tf.float32))

    def _eval_fn(self, users, anime, ratings, start, stop):  # type: ignore[no-untyped-def]
        pred = self.model({"user": users[start:stop, None], "anime": anime[start:stop, None]}, training=False)
        return self._sums(ratings[start:stop], pred)[1]

    def optimizer_state(self) -> dict[str, Callable[[], np.ndarray]]:
        """Adam's variables, as the keras path saves them."""
        return keras_optimizer_state(self.model)

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore Adam's variables saved by :meth:`optimizer_state`."""
        self.model.optimizer.load_own_variables(state)
