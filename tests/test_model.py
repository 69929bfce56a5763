"""Tests of anime_recs.models.network.architecture: parameters, architecture, LR schedule, strategies."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from anime_recs.core.errors import UserInputError
from anime_recs.models.network.architecture import (
    ModelParams,
    build_model,
    is_chief,
    learning_rate,
    scaled_batch_and_lr,
    select_strategy,
)

HISTORY_CSV = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "reference_outputs" / "dyrutter_original" / "anime_nn_history.csv"
)
# The `lr` column of the original's recorded history (figure_file/anime_nn_history.csv).
ORIGINAL_LR = [
    1e-05, 1.8e-05, 2.6e-05, 3.4e-05, 4.2e-05, 5e-05, 4.2e-05, 3.56e-05, 3.048e-05,
    2.6384e-05, 2.31072e-05, 2.048576e-05, 1.8388608e-05, 1.6710886e-05, 1.5368709e-05,
]  # fmt: skip


def test_learning_rate_matches_original_history() -> None:
    params = ModelParams()
    ours = [learning_rate(epoch, params) for epoch in range(len(ORIGINAL_LR))]
    np.testing.assert_allclose(ours, ORIGINAL_LR, rtol=1e-6)
    if HISTORY_CSV.is_file():
        recorded = pd.read_csv(HISTORY_CSV)["lr"].to_numpy()
        np.testing.assert_allclose([learning_rate(e, params) for e in range(len(recorded))], recorded, rtol=1e-6)


def test_learning_rate_sustain_and_floor() -> None:
    params = ModelParams(start_lr=0.0, max_lr=1.0, min_lr=0.1, rampup_epochs=2, sustain_epochs=2, exp_decay=0.5)
    assert [learning_rate(e, params) for e in range(6)] == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0, 0.55])
    assert learning_rate(200, params) == pytest.approx(0.1)


def test_build_model_layers_and_shapes() -> None:
    params = ModelParams(embedding_size=8, l2_reg_factor=1e-4, start_lr=3e-4)
    model = build_model(40, 25, params)
    assert [i.name for i in model.inputs] == ["user", "anime"]
    names = [layer.name for layer in model.layers]
    for name in ("user_embedding", "anime_embedding", "dot_product", "flatten", "dense", "batch_normalization", "activation"):
        assert name in names
    assert model.get_layer("user_embedding").get_weights()[0].shape == (40, 8)
    assert model.get_layer("anime_embedding").get_weights()[0].shape == (25, 8)
    assert model.get_layer("user_embedding").embeddings_regularizer.l2 == pytest.approx(1e-4)
    assert model.get_layer("dot_product").normalize is True
    assert model.get_layer("dense").get_weights()[0].shape == (1, 1)
    assert model.get_layer("activation").get_config()["activation"] == "sigmoid"
    assert model.output.shape == (None, 1)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-4)
    out = model.predict({"user": np.array([[0], [39]]), "anime": np.array([[0], [24]])}, verbose=0)
    assert out.shape == (2, 1) and np.all((out > 0) & (out < 1))


def test_build_model_is_seeded() -> None:
    a = build_model(30, 20, ModelParams(embedding_size=4, seed=1)).get_weights()
    b = build_model(30, 20, ModelParams(embedding_size=4, seed=1)).get_weights()
    c = build_model(30, 20, ModelParams(embedding_size=4, seed=2)).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # Regression: one seed for both tables made anime row i equal user row i.
    assert not np.allclose(a[0][:20], a[1])


def test_model_params_from_mapping_coerces_and_ignores() -> None:
    params = ModelParams.from_mapping(
        {
            "embedding_size": "32",
            "batch_size": 512.0,
            "max_lr": "1e-3",
            "model_metrics": ["mse"],
            "jit_compile": "false",
            "TPU_INIT": False,  # a step option, not a model parameter
            "weights_artifact": "x.h5",
        }
    )
    assert params.embedding_size == 32 and params.batch_size == 512
    assert params.max_lr == pytest.approx(1e-3)
    assert params.model_metrics == ("mse",)
    assert params.jit_compile is False
    assert params.epochs == ModelParams().epochs


@pytest.mark.parametrize(
    "mapping",
    [{"embedding_size": "big"}, {"training_path": "gpu"}, {"mode": "lowest"}, {"batch_size": 0}, {"jit_compile": "maybe"}],
)
def test_model_params_reject_bad_values(mapping: dict) -> None:
    with pytest.raises(UserInputError):
        ModelParams.from_mapping(mapping)


def test_unknown_keras_names_are_user_errors() -> None:
    with pytest.raises(UserInputError, match="kernel_initializer"):
        build_model(5, 5, ModelParams(embedding_size=2, kernel_initializer="he_nrmal"))
    with pytest.raises(UserInputError, match="optimizer"):
        build_model(5, 5, ModelParams(embedding_size=2, optimizer="Adamm"))


def test_select_strategy_default() -> None:
    strategy = select_strategy(tpu_init=False)
    assert isinstance(strategy, tf.distribute.Strategy)
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        model = build_model(5, 5, ModelParams(embedding_size=2))
    assert isinstance(model, keras.Model)


@pytest.mark.parametrize(
    ("task_type", "task_id", "cluster", "chief"),
    [
        ("worker", 0, {"worker": ["a:1", "b:1"]}, True),  # no chief task: worker 0 publishes
        ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
        ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),
        ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
        (None, None, {}, True),  # MultiWorkerMirroredStrategy without TF_CONFIG: one local worker
    ],
)
def test_is_chief_follows_tf_config(task_type: str | None, task_id: int | None, cluster: dict, chief: bool) -> None:
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    strategy = type("FakeStrategy", (), {"cluster_resolver": resolver})()
    assert is_chief(strategy) is chief
    assert is_chief(None) and is_chief(select_strategy(tpu_init=False))


@pytest.mark.parametrize("address", ["", "local"])
def test_select_strategy_missing_tpu_is_one_line_user_error(address: str) -> None:
    with pytest.raises(UserInputError) as info:
        select_strategy(tpu_init=True, tpu_address=address)
    message = str(info.value)
    assert "\n" not in message
    assert f"no TPU was found at {address!r}" in message
    assert "model.TPU_init=false" in message


def test_scaled_batch_and_lr() -> None:
    params = ModelParams(batch_size=100, start_lr=1e-5, min_lr=2e-5, max_lr=5e-5, epochs=7)
    scaled = scaled_batch_and_lr(params, 8)
    assert scaled.batch_size == 800
    assert (scaled.start_lr, scaled.min_lr, scaled.max_lr) == pytest.approx((8e-5, 16e-5, 40e-5))
    assert scaled.epochs == 7 and scaled.embedding_size == params.embedding_size
    assert params.batch_size == 100  # unchanged input
    assert scaled_batch_and_lr(params, 1) == params
    with pytest.raises(UserInputError):
        scaled_batch_and_lr(params, 0)
