"""Tests of anime_recs.models.network.embeddings: normalised tables and the NumPy prediction head."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from anime_recs.models.network.embeddings import PredictionHead, extract_embeddings
from anime_recs.core.errors import UserInputError
from anime_recs.models.network.architecture import ModelParams, build_model

N_USERS, N_ANIME = 30, 20


def _model_with_trained_head(activation: str = "sigmoid") -> keras.Model:
    """A model whose head holds non-default values (as after training)."""
    model = build_model(N_USERS, N_ANIME, ModelParams(embedding_size=6, activation_function=activation))
    model.get_layer("dense").set_weights([np.array([[2.5]], np.float32), np.array([0.3], np.float32)])
    bn = model.get_layer("batch_normalization")
    bn.set_weights([np.array([1.7], np.float32), np.array([-0.2], np.float32), np.array([0.1], np.float32), np.array([0.4], np.float32)])
    return model


def _all_pairs() -> tuple[np.ndarray, np.ndarray]:
    users, anime = np.meshgrid(np.arange(N_USERS), np.arange(N_ANIME), indexing="ij")
    return users.ravel(), anime.ravel()


def test_extract_embeddings_are_unit_rows_and_zero_safe() -> None:
    model = build_model(N_USERS, N_ANIME, ModelParams(embedding_size=6))
    table = model.get_layer("user_embedding").embeddings
    raw = table.numpy()
    raw[3] = 0.0
    table.assign(raw)
    users, anime = extract_embeddings(model)
    assert users.dtype == np.float32 and anime.dtype == np.float32
    assert users.shape == (N_USERS, 6) and anime.shape == (N_ANIME, 6)
    norms = np.linalg.norm(users, axis=1)
    assert np.all(np.isfinite(users))
    assert norms[3] == 0.0
    np.testing.assert_allclose(np.delete(norms, 3), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(anime, axis=1), 1.0, rtol=1e-5)
    # Direction is kept: normalised row is the raw row over its norm.
    np.testing.assert_allclose(users[5], raw[5] / np.linalg.norm(raw[5]), rtol=1e-5)


@pytest.mark.parametrize("activation", ["sigmoid", "linear", "relu", "tanh", "softplus"])
def test_prediction_head_equals_model_predict(activation: str) -> None:
    model = _model_with_trained_head(activation)
    u, a = _all_pairs()
    expected = model.predict({"user": u[:, None], "anime": a[:, None]}, verbose=0, batch_size=1024).ravel()
    users, anime = extract_embeddings(model)
    head = PredictionHead.from_model(model)
    assert head.activation == activation
    got = head.predict(np.einsum("ij,ij->i", users[u], anime[a]))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-5)
    # The whole score matrix of one user in one product, as a recommender does it.
    np.testing.assert_allclose(head.predict(users[7] @ anime.T), expected[u == 7], atol=2e-6, rtol=1e-5)


def test_prediction_head_round_trips_through_json() -> None:
    head = PredictionHead.from_model(_model_with_trained_head())
    again = PredictionHead.from_dict(json.loads(json.dumps(head.to_dict())))
    assert again == head
    cos = np.linspace(-1, 1, 11)
    np.testing.assert_array_equal(again.predict(cos), head.predict(cos))


def test_prediction_head_rejects_bad_input() -> None:
    fields = PredictionHead.from_model(_model_with_trained_head()).to_dict()
    with pytest.raises(UserInputError, match="activation"):
        PredictionHead.from_dict({**fields, "activation": "selu"})
    del fields["gamma"]
    with pytest.raises(UserInputError, match="gamma"):
        PredictionHead.from_dict(fields)


def test_saved_model_gives_the_same_head(tmp_path: Path) -> None:
    # PLATFORM.md: save .keras before .h5 (Keras 3.15 drops the optimizer on .h5).
    model = _model_with_trained_head()
    model.save(tmp_path / "model.keras")
    model.save(tmp_path / "model.h5")
    for name in ("model.keras", "model.h5"):
        loaded = keras.models.load_model(tmp_path / name)
        assert PredictionHead.from_model(loaded) == PredictionHead.from_model(model)
        for mine, theirs in zip(extract_embeddings(model), extract_embeddings(loaded)):
            np.testing.assert_array_equal(mine, theirs)
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(reloaded.optimizer).__name__ == "Adam"
