"""The fast training path: lazy Adam on the embedding rows a batch touches, in place.

Per step, for a batch of ``B`` (user, anime, rating) rows:

1. :func:`_batch_cosines` (compiled with Numba, parallel over rows): the cosine of each row's user
   and anime vectors, straight from the embedding tables (no gathered copy).
2. The prediction head in TensorFlow on those ``B`` numbers: Keras' own ``Dense``,
   ``BatchNormalization`` (training mode, so its moving statistics update exactly as in ``fit``)
   and ``Activation`` layers, the configured loss and metrics, and Keras' Adam on the head's
   weights. It returns the loss gradient per cosine.
3. :func:`_group_rows` and :func:`_row_gradient`: the batch rows grouped by embedding row, and the
   gradient of each touched row summed over its batch rows (duplicates add up, in batch order).
4. :func:`_adam_row` (parallel over touched rows): the L2 gradient of the row plus Keras' Adam
   arithmetic on the row and its two moments, written back in place. The users' rows get steps
   3 and 4 in one pass (:func:`_update_rows`); the anime gradients are taken first, because they
   need the users' values from before the step.

Each embedding row lives next to its Adam moments (``state[row] = [value, m, v]``), so a touched row
is one contiguous read and write; rows absent from the batch are not read at all. Training is
memory-bound, and this is about the least memory traffic lazy Adam allows: step 2 sees only
``B`` floats, steps 1, 3 and 4 read each touched row once from memory and write it once. The
results do not depend on the number of threads (every sum has a fixed order).

Lazy Adam is a different optimiser from Keras' dense Adam + L2 (rows absent from a batch keep their
values and moments); with every row in every batch the two are the same (see the tests). The Keras
model's embedding tables are refreshed from ``state`` at the end of every epoch, before validation
and checkpoints, so everything outside the step (evaluation, early stopping, checkpoints, the
returned model) sees an ordinary Keras model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import keras
import numba
import numpy as np
import tensorflow as tf

from anime_recs.core.encoding import RatingArrays
from anime_recs.core.errors import UserInputError
from anime_recs.models.network.architecture import ACTIVATION, ANIME_EMBEDDING, BATCH_NORM, DENSE, USER_EMBEDDING, ModelParams
from anime_recs.models.network.trainer import CustomTrainer

logger = logging.getLogger(__name__)

# GNU OpenMP (Numba's "omp" threading layer; libgomp reads this when the first parallel kernel
# starts its threads, not at import) keeps idle workers spinning by default. A step runs four short
# parallel kernels with TensorFlow in between, so the workers spun against the main thread: on 2 busy
# cores a 150-epoch fit of 324 ratings took 13-27 s of CPU instead of 3-4 s, and a 300k-rating fit at
# batch 1024 took 17-21 s instead of 2-3 s, with identical weights. Passive workers sleep until the
# next kernel. Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-7  # Keras Adam defaults
_VALUE, _M, _V = 0, 1, 2  # layout of a row of the state: (3, embedding_size)

# Lets LLVM vectorise the three dot products of a row (a different, fixed summation order: the
# results are the same on every run on the same machine, whatever the thread count).
_DOT_MATH = {"reassoc", "contract"}
_KERNEL = {"cache": True, "nogil": True, "error_model": "numpy"}  # float division by 0 gives inf, as in TF


# --------------------------------------------------------------------------
# Kernels (Numba): every loop over rows is compiled; none runs in Python
# --------------------------------------------------------------------------


@numba.njit(parallel=True, fastmath=_DOT_MATH, **_KERNEL)
def _batch_cosines(user_state, anime_state, users, anime, cosine, inv_norm_u, inv_norm_a):  # type: ignore[no-untyped-def]
    """Per batch row: cosine of the two vectors and the inverse norms (uncapped) of each."""
    dim = user_state.shape[2]
    for i in numba.prange(users.shape[0]):
        u, a = users[i], anime[i]
        sq_u = np.float32(0.0)
        sq_a = np.float32(0.0)
        dot = np.float32(0.0)
        for k in range(dim):
            x, y = user_state[u, _VALUE, k], anime_state[a, _VALUE, k]
            sq_u += x * x
            sq_a += y * y
            dot += x * y
        inv_norm_u[i] = np.float32(1.0) / np.sqrt(sq_u)
        inv_norm_a[i] = np.float32(1.0) / np.sqrt(sq_a)
        cosine[i] = dot  # scaled by the capped norms in _cosine_scale


@numba.njit(**_KERNEL)
def _group_rows(ids, slot_of, unique, starts, members):  # type: ignore[no-untyped-def]
    """Group the batch rows by embedding row; return the number of distinct rows ``n``.

    ``unique[:n]`` are the rows in order of first appearance; the batch positions of ``unique[s]``
    are ``members[starts[s]:starts[s + 1]]`` in batch order. ``slot_of`` (one entry per table row,
    -1 everywhere) is scratch space and is left as it was found.
    """
    n = 0
    slot = np.empty(ids.shape[0], np.int32)
    for i in range(ids.shape[0]):
        row = ids[i]
        s = slot_of[row]
        if s < 0:
            s = n
            slot_of[row] = s
            unique[s] = row
            starts[s + 1] = 0
            n += 1
        slot[i] = s
        starts[s + 1] += 1
    starts[0] = 0
    for s in range(n):
        starts[s + 1] += starts[s]
        slot_of[unique[s]] = -1
    fill = starts[:n].copy()
    for i in range(ids.shape[0]):
        members[fill[slot[i]]] = i
        fill[slot[i]] += 1
    return n


@numba.njit(**_KERNEL)
def _row_gradient(s, state, other_state, other_ids, unique, starts, members, scale, self_scale, grad):  # type: ignore[no-untyped-def]
    """``grad[s]`` = sum over the batch rows of ``unique[s]`` of ``scale * other - self_scale * own``.

    That is the gradient of the loss with respect to the row through the cosine; see
    :meth:`LazyAdamTrainer._cosine_scale` for the two coefficients.
    """
    row = unique[s]
    for k in range(state.shape[2]):
        grad[s, k] = 0.0
    for j in range(starts[s], starts[s + 1]):
        i = members[j]
        o = other_ids[i]
        c_other, c_own = scale[i], self_scale[i]
        for k in range(state.shape[2]):
            grad[s, k] += c_other * other_state[o, _VALUE, k] - c_own * state[row, _VALUE, k]


@numba.njit(**_KERNEL)
def _adam_row(state, row, grad, alpha, l2_twice, beta_1, beta_2, epsilon):  # type: ignore[no-untyped-def]
    """Keras' Adam update of one row and its moments, in place, with the L2 gradient ``2 * l2 * value``."""
    one = np.float32(1.0)
    for k in range(state.shape[2]):
        value = state[row, _VALUE, k]
        g = grad[k] + l2_twice * value
        m = state[row, _M, k]
        v = state[row, _V, k]
        m += (g - m) * (one - beta_1)
        v += (g * g - v) * (one - beta_2)
        state[row, _M, k] = m
        state[row, _V, k] = v
        state[row, _VALUE, k] = value - m * alpha / (np.sqrt(v) + epsilon)


@numba.njit(parallel=True, **_KERNEL)
def _row_gradients(state, other_state, other_ids, unique, n, starts, members, scale, self_scale, grad):  # type: ignore[no-untyped-def]
    """:func:`_row_gradient` of the ``n`` touched rows, in parallel."""
    for s in numba.prange(n):
        _row_gradient(s, state, other_state, other_ids, unique, starts, members, scale, self_scale, grad)


@numba.njit(parallel=True, **_KERNEL)
def _adam_rows(state, unique, n, grad, alpha, l2_twice, beta_1, beta_2, epsilon):  # type: ignore[no-untyped-def]
    """:func:`_adam_row` of the ``n`` touched rows with the gradients ``grad[:n]``, in parallel."""
    for s in numba.prange(n):
        _adam_row(state, unique[s], grad[s], alpha, l2_twice, beta_1, beta_2, epsilon)


@numba.njit(parallel=True, **_KERNEL)
def _update_rows(state, other_state, other_ids, unique, n, starts, members, scale, self_scale, grad, alpha,
                 l2_twice, beta_1, beta_2, epsilon):  # type: ignore[no-untyped-def]  # fmt: skip
    """Gradient then Adam, row by row (the row is read from memory once)."""
    for s in numba.prange(n):
        _row_gradient(s, state, other_state, other_ids, unique, starts, members, scale, self_scale, grad)
        _adam_row(state, unique[s], grad[s], alpha, l2_twice, beta_1, beta_2, epsilon)


# --------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------


class _TableState:
    """One embedding table during training: ``values`` (rows x 3 x dim: value, m, v) and scratch space."""

    def __init__(self, variable: tf.Variable, batch_size: int) -> None:
        self.variable = variable
        rows, dim = variable.shape
        self.values = np.zeros((rows, 3, dim), np.float32)
        self.slot_of = np.full(rows, -1, np.int32)
        self.reserve(batch_size)

    def reserve(self, batch_size: int) -> None:
        """Scratch space for batches of up to ``batch_size`` rows (the kernels do not check bounds)."""
        self.unique = np.empty(batch_size, np.int32)
        self.starts = np.empty(batch_size + 1, np.int32)
        self.members = np.empty(batch_size, np.int32)
        self.grad = np.empty((batch_size, self.values.shape[2]), np.float32)

    def check_ids(self, ids: np.ndarray, kind: str) -> None:
        """A one-line error for ids outside the table (the kernels would read and write out of bounds)."""
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(self.values)):
            raise UserInputError(
                f"a training batch has {kind} indices {int(ids.min())}..{int(ids.max())} but the model has "
                f"{len(self.values)} {kind} rows; encode ids with the same IdEncoder that sized the model"
            )

    def load_from_model(self) -> None:
        self.values[:, _VALUE, :] = self.variable.numpy()

    def store_in_model(self) -> None:
        self.variable.assign(self.values[:, _VALUE, :])

    def moments(self) -> dict[str, Callable[[], np.ndarray]]:
        return {"m": lambda: self.values[:, _M, :].copy(), "v": lambda: self.values[:, _V, :].copy()}


class LazyAdamTrainer(CustomTrainer):
    """Trains the Keras model's variables with lazy Adam (see the module docstring)."""

    def __init__(self, model: keras.Model, params: ModelParams) -> None:
        super().__init__(model, params)
        self.users = _TableState(model.get_layer(USER_EMBEDDING).embeddings.value, params.batch_size)
        self.anime = _TableState(model.get_layer(ANIME_EMBEDDING).embeddings.value, params.batch_size)
        self.dense = model.get_layer(DENSE)
        self.bn = model.get_layer(BATCH_NORM)
        self.activation = model.get_layer(ACTIVATION)
        tables = {id(self.users.variable), id(self.anime.variable)}
        self.head_vars = [v.value for v in model.trainable_variables if id(v.value) not in tables]

        def zeros(var: tf.Variable) -> tf.Variable:
            return tf.Variable(tf.zeros_like(var), trainable=False)

        self.m_head = [zeros(v) for v in self.head_vars]
        self.v_head = [zeros(v) for v in self.head_vars]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.l2_twice = np.float32(2.0 * params.l2_reg_factor)
        self.cap = np.float32(1.0 / keras.backend.epsilon())  # Keras' normalize: x * min(rsqrt(sum x^2), 1/eps)
        self._reserve(params.batch_size)
        jit = bool(params.jit_compile)
        vec = tf.TensorSpec([None], tf.float32)
        # Traced once, called as concrete functions: half the per-call overhead of a tf.function
        # (which matters with small batches). Validation runs once an epoch on slices of two sizes:
        # compiling it with XLA would cost more than it saves. No AutoGraph: neither function (nor the
        # Keras layers and losses they call) branches or loops on tensors, so converting them only
        # added ~0.5-0.9 s of tracing per fit; the graphs and the trained weights are bit-identical.
        self._head_step = tf.function(self._head_step_fn, jit_compile=jit, autograph=False).get_concrete_function(
            vec, vec, tf.TensorSpec([], tf.float32)
        )
        self._head_eval = tf.function(self._head_eval_fn, jit_compile=False, autograph=False).get_concrete_function(vec, vec)
        self.load_from_model()

    def _reserve(self, batch_size: int) -> None:
        self.capacity = batch_size
        self._cosine, self._inv_u, self._inv_a = (np.empty(batch_size, np.float32) for _ in range(3))
        self.users.reserve(batch_size)
        self.anime.reserve(batch_size)

    def _checked_ids(self, users: np.ndarray, anime: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contiguous int32 ids, checked against the tables."""
        users, anime = np.ascontiguousarray(users, np.int32), np.ascontiguousarray(anime, np.int32)
        self.users.check_ids(users, "user")
        self.anime.check_ids(anime, "anime")
        return users, anime

    # ---- the head (TensorFlow, B numbers) ----------------------------------

    def _head(self, cosine: tf.Tensor, training: bool) -> tf.Tensor:
        out = self.dense(cosine[:, None])
        out = self.bn(out, training=training)
        return self.activation(out)

    def _head_step_fn(self, cosine, y, lr):  # type: ignore[no-untyped-def]
        """Forward and backward through the head; Adam on its weights; the gradient per cosine."""
        with tf.GradientTape() as tape:
            tape.watch(cosine)
            loss, sums = self._sums(y, self._head(cosine, training=True))
        grads = tape.gradient(loss, [cosine, *self.head_vars])
        step = tf.cast(self.iterations + 1, tf.float32)
        alpha = lr * tf.sqrt(1.0 - tf.pow(_BETA_2, step)) / (1.0 - tf.pow(_BETA_1, step))
        for var, grad, m, v in zip(self.head_vars, grads[1:], self.m_head, self.v_head):
            m.assign_add((grad - m) * (1.0 - _BETA_1))
            v.assign_add((tf.square(grad) - v) * (1.0 - _BETA_2))
            var.assign_sub(m * alpha / (tf.sqrt(v) + _EPSILON))
        self.iterations.assign_add(1)
        count = tf.cast(tf.shape(y)[0], tf.float64)
        self.train_sums.assign_add(tf.concat([tf.cast(sums, tf.float64), [count]], 0))
        return grads[0], alpha

    def _head_eval_fn(self, cosine, y):  # type: ignore[no-untyped-def]
        return self._sums(y, self._head(cosine, training=False))[1]

    # ---- the embedding rows (Numba) ----------------------------------------

    def _cosines(self, users: np.ndarray, anime: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cosine per row, the capped inverse norms, and whether each cap is active."""
        n = len(users)
        cosine, inv_u, inv_a = self._cosine[:n], self._inv_u[:n], self._inv_a[:n]
        _batch_cosines(self.users.values, self.anime.values, users, anime, cosine, inv_u, inv_a)
        capped_u, capped_a = inv_u > self.cap, inv_a > self.cap
        np.minimum(inv_u, self.cap, out=inv_u)
        np.minimum(inv_a, self.cap, out=inv_a)
        cosine *= inv_u * inv_a
        return cosine, inv_u, inv_a, np.stack([capped_u, capped_a])

    @staticmethod
    def _cosine_scale(upstream: np.ndarray, cosine: np.ndarray, inv_own: np.ndarray, inv_other: np.ndarray,
                      capped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Coefficients of ``d cos/d own = other/(|own||other|) - cos * own/|own|^2``, times ``upstream``.

        The second term vanishes where Keras' epsilon cap is active (the norm no longer depends on
        the vector).
        """
        scale = upstream * inv_own * inv_other
        self_scale = np.where(capped, np.float32(0.0), upstream * cosine * inv_own * inv_own)
        return scale, self_scale

    def step(self, batch: RatingArrays, lr: tf.Tensor) -> None:
        """One lazy-Adam step on ``batch``."""
        users, anime = self._checked_ids(batch.user_idx, batch.anime_idx)
        if len(users) > self.capacity:
            self._reserve(len(users))
        cosine, inv_u, inv_a, capped = self._cosines(users, anime)
        upstream, alpha = self._head_step(tf.constant(cosine), tf.constant(batch.rating, tf.float32), lr)
        upstream = upstream.numpy()
        alpha = np.float32(alpha.numpy())
        adam = (alpha, self.l2_twice, np.float32(_BETA_1), np.float32(_BETA_2), np.float32(_EPSILON))
        users_scales = self._cosine_scale(upstream, cosine, inv_u, inv_a, capped[0])
        anime_scales = self._cosine_scale(upstream, cosine, inv_a, inv_u, capped[1])
        # The anime gradients need the users' values before this step, so: anime gradients, then
        # users' gradient + update row by row (the anime values are still the old ones), then anime update.
        first, second = self.anime, self.users
        n_first = _group_rows(anime, first.slot_of, first.unique, first.starts, first.members)
        _row_gradients(first.values, second.values, users, first.unique, n_first, first.starts, first.members,
                       *anime_scales, first.grad)  # fmt: skip
        n_second = _group_rows(users, second.slot_of, second.unique, second.starts, second.members)
        _update_rows(second.values, first.values, anime, second.unique, n_second, second.starts, second.members,
                     *users_scales, second.grad, *adam)  # fmt: skip
        _adam_rows(first.values, first.unique, n_first, first.grad, *adam)

    # ---- the loop's interface ----------------------------------------------

    def load_from_model(self) -> None:
        """Take the embedding tables from the Keras model (at the start and after a resume)."""
        self.users.load_from_model()
        self.anime.load_from_model()

    def sync_model(self) -> None:
        """Write the trained embedding rows into the Keras model's tables."""
        self.users.store_in_model()
        self.anime.store_in_model()

    def _evaluate(self, users: np.ndarray, anime: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        # Slices of at most batch_size rows: the step's scratch space fits them.
        users, anime = self._checked_ids(users, anime)
        total = np.zeros(1 + len(self.metric_fns))
        size = self.params.batch_size
        for start in range(0, len(users), size):
            stop = start + size
            cosine = self._cosines(users[start:stop], anime[start:stop])[0]
            total += self._head_eval(tf.constant(cosine), tf.constant(ratings[start:stop], tf.float32)).numpy()
        return total / len(users)

    def optimizer_state(self) -> dict[str, Callable[[], np.ndarray]]:
        """Name -> reader of every optimizer variable (read lazily, see save_arrays)."""
        readers: dict[str, Callable[[], np.ndarray]] = {"iterations": self.iterations.numpy}
        for name, table in (("user", self.users), ("anime", self.anime)):
            for moment, read in table.moments().items():
                readers[f"{moment}_{name}"] = read
        for i, (m, v) in enumerate(zip(self.m_head, self.v_head)):
            readers[f"m_dense_{i}"], readers[f"v_dense_{i}"] = m.numpy, v.numpy
        return readers

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`optimizer_state` saved."""
        self.iterations.assign(state["iterations"])
        for name, table in (("user", self.users), ("anime", self.anime)):
            table.values[:, _M, :] = state[f"m_{name}"]
            table.values[:, _V, :] = state[f"v_{name}"]
        for i, (m, v) in enumerate(zip(self.m_head, self.v_head)):
            m.assign(state[f"m_dense_{i}"])
            v.assign(state[f"v_dense_{i}"])
