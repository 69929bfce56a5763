"""Read a trained model's weights out into plain NumPy for the recommenders.

The model's score for a (user, anime) pair is a tiny function of one number,
the cosine of the two raw embedding rows: ``Dot(normalize=True)`` *is* that
cosine, followed by ``Dense(1)``, ``BatchNormalization`` (inference mode) and
an activation. So the recommenders need only the L2-normalised tables from
:func:`extract_embeddings` and the few scalars of :class:`PredictionHead`;
they never import TensorFlow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from anime_recs.core.errors import UserInputError

if TYPE_CHECKING:  # keeps `import anime_recs.models.network.embeddings` free of TensorFlow
    import keras

logger = logging.getLogger(__name__)

_ACTIVATIONS = ("sigmoid", "linear", "relu", "tanh", "softplus")


def extract_embeddings(model: "keras.Model") -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised user and anime embedding matrices of a trained model.

    Args:
        model: A model from :func:`anime_recs.models.network.architecture.build_model` (or the
            original's, whose layers have the same names).

    Returns:
        ``(users, anime)``: float32 arrays of shape ``(n, embedding_size)``
        whose rows have unit norm; an all-zero row stays all zero instead of
        becoming NaN.

    Raises:
        UserInputError: If the model has no ``user_embedding`` /
            ``anime_embedding`` layer.
    """
    return (
        normalize_rows(_layer(model, "user_embedding", "Embedding").get_weights()[0]),
        normalize_rows(_layer(model, "anime_embedding", "Embedding").get_weights()[0]),
    )


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32; zero rows stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    # Dividing by 1 leaves a zero row at zero: cosine 0 with everything,
    # which ranks it last instead of poisoning results with NaN.
    return matrix / np.where(norms > 0, norms, 1.0).astype(np.float32)


def _layer(model: "keras.Model", name: str, class_name: str) -> Any:
    """The layer called ``name``, else the only layer of type ``class_name``."""
    try:
        return model.get_layer(name)
    except ValueError:
        matches = [layer for layer in model.layers if type(layer).__name__ == class_name]
        if len(matches) == 1:
            return matches[0]
        raise UserInputError(
            f"the model has no layer named {name!r} (layers: {', '.join(layer.name for layer in model.layers)}); "
            "load a model built by anime_recs.models.network.architecture.build_model"
        ) from None


@dataclass
class PredictionHead:
    """The layers after the cosine: ``Dense(1)`` → ``BatchNormalization`` → activation.

    Attributes:
        kernel: Dense weight (a scalar: the cosine is one feature).
        bias: Dense bias.
        gamma: BN scale.
        beta: BN offset.
        moving_mean: BN moving mean (inference statistics).
        moving_variance: BN moving variance.
        epsilon: BN epsilon.
        activation: One of sigmoid, linear, relu, tanh, softplus.
    """

    kernel: float
    bias: float
    gamma: float
    beta: float
    moving_mean: float
    moving_variance: float
    epsilon: float
    activation: str

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise UserInputError(
                f"activation {self.activation!r} is not supported by PredictionHead; choose from: {', '.join(_ACTIVATIONS)}"
            )

    @classmethod
    def from_model(cls, model: "keras.Model") -> "PredictionHead":
        """Read the head's scalars from a trained model.

        Raises:
            UserInputError: If a layer is missing or the activation unsupported.
        """
        dense = _layer(model, "dense", "Dense")
        bn = _layer(model, "batch_normalization", "BatchNormalization")
        act = _layer(model, "activation", "Activation")
        kernel = dense.get_weights()[0]
        bias = dense.get_weights()[1] if dense.use_bias else np.zeros(1)
        if np.size(kernel) != 1:
            raise UserInputError(f"expected a Dense(1) on the cosine, found a kernel of shape {np.shape(kernel)}")
        bn_weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy()) for w in bn.weights}
        activation = act.get_config()["activation"]
        if not isinstance(activation, str):
            activation = getattr(act.activation, "__name__", str(activation))
        return cls(
            kernel=float(np.ravel(kernel)[0]),
            bias=float(np.ravel(bias)[0]),
            gamma=float(np.ravel(bn_weights.get("gamma", np.ones(1)))[0]),
            beta=float(np.ravel(bn_weights.get("beta", np.zeros(1)))[0]),
            moving_mean=float(np.ravel(bn_weights["moving_mean"])[0]),
            moving_variance=float(np.ravel(bn_weights["moving_variance"])[0]),
            epsilon=float(bn.epsilon),
            activation=str(activation),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (saved next to the embeddings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PredictionHead":
        """Inverse of :meth:`to_dict`.

        Raises:
            UserInputError: If a key is missing.
        """
        names = [f for f in cls.__dataclass_fields__]
        missing = [name for name in names if name not in data]
        if missing:
            raise UserInputError(f"prediction head is missing {', '.join(missing)}; re-export it from the model")
        return cls(**{name: data[name] for name in names})

    def predict(self, cosine: np.ndarray) -> np.ndarray:
        """Model output for cosines of (user, anime) embedding pairs.

        Args:
            cosine: Any shape; the cosine of the raw (or normalised) user and
                anime embedding rows, e.g. ``users[u] @ anime.T`` from
                :func:`extract_embeddings`.

        Returns:
            float32 array of the same shape: what ``model.predict`` returns
            for the same pairs.
        """
        x = np.asarray(cosine, dtype=np.float32)
        z = x * np.float32(self.kernel) + np.float32(self.bias)
        scale = np.float32(self.gamma / np.sqrt(self.moving_variance + self.epsilon))
        z = (z - np.float32(self.moving_mean)) * scale + np.float32(self.beta)
        if self.activation == "sigmoid":
            # exp of a non-positive number only: no overflow warnings.
            e = np.exp(-np.abs(z))
            out = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        elif self.activation == "linear":
            out = z
        elif self.activation == "relu":
            out = np.maximum(z, 0)
        elif self.activation == "tanh":
            out = np.tanh(z)
        else:  # softplus
            out = np.logaddexp(0, z)
        return np.asarray(out, dtype=np.float32)
