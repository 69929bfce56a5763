"""Tests of anime_recs.models.network.training (both paths) and anime_recs.data.synthetic."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from anime_recs.core.encoding import RatingArrays
from anime_recs.core.errors import UserInputError
from anime_recs.models.network.lazy_adam import LazyAdamTrainer
from anime_recs.models.network.architecture import ModelParams, build_model
from anime_recs.data.synthetic import latent_factor_ratings
from anime_recs.models.network.trainer import BEST_WEIGHTS, LAST_WEIGHTS, STATE_JSON, TrainResult
from anime_recs.models.network.training import train_model

N_USERS, N_ANIME = 300, 120

# Learning rates far above the original's 1e-5 so a few small epochs learn.
SMALL = {"embedding_size": 16, "batch_size": 500, "epochs": 4, "start_lr": 2e-2, "max_lr": 2e-2, "min_lr": 2e-3,
         "rampup_epochs": 0, "exp_decay": 0.7}


@pytest.fixture(scope="module")
def data() -> tuple[RatingArrays, RatingArrays]:
    rows = latent_factor_ratings(N_USERS, N_ANIME, 24_000, dim=4, noise=0.05, seed=3)
    return rows.take(np.arange(21_000)), rows.take(np.arange(21_000, 24_000))


Fitted = tuple[TrainResult, list[int], Path]


@pytest.fixture(scope="module")
def fitted(data: tuple[RatingArrays, RatingArrays], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Fitted]:
    """``fitted(path)``: the 4-epoch SMALL fit of ``path`` with checkpoints, run once per module.

    Returns the result, the epochs ``on_epoch_end`` saw and the checkpoint folder (resume a copy of it).
    test_path_learns_and_beats_global_mean checks what the fit learned, and
    test_keras_path_resume_continues_from_saved_epoch resumes it instead of training a run of its own.
    """
    runs: dict[str, Fitted] = {}

    def fit(path: str) -> Fitted:
        if path not in runs:
            train, val = data
            seen: list[int] = []
            checkpoint_dir = tmp_path_factory.mktemp(f"fitted-{path}")
            result = train_model(
                train, val, N_USERS, N_ANIME, ModelParams(**SMALL, training_path=path), checkpoint_dir=checkpoint_dir,
                on_epoch_end=lambda epoch, row: seen.append(epoch), verbose=False,
            )  # fmt: skip
            runs[path] = (result, seen, checkpoint_dir)
        return runs[path]

    return fit


def _mean_predictor_mse(train: RatingArrays, val: RatingArrays) -> float:
    return float(np.mean((val.rating - train.rating.mean()) ** 2))


def _predict(model, rows: RatingArrays) -> np.ndarray:  # type: ignore[no-untyped-def]
    x = {"user": rows.user_idx[:, None], "anime": rows.anime_idx[:, None]}
    return model.predict(x, batch_size=4096, verbose=0).ravel()


# ---------------------------------------------------------------------------- synthetic


def test_latent_factor_ratings_contract() -> None:
    rows = latent_factor_ratings(50, 20, 5000, seed=7)
    assert rows.user_idx.dtype == np.int32 and rows.anime_idx.dtype == np.int32 and rows.rating.dtype == np.float32
    assert len(rows) == 5000
    assert 0 <= rows.user_idx.min() and rows.user_idx.max() < 50
    assert 0 <= rows.anime_idx.min() and rows.anime_idx.max() < 20
    assert rows.rating.min() >= 0.0 and rows.rating.max() <= 1.0 and rows.rating.std() > 0.1
    again = latent_factor_ratings(50, 20, 5000, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(rows, again))
    counts = np.bincount(rows.anime_idx, minlength=20)
    assert counts.max() > 3 * np.median(counts)  # popularity skew
    with pytest.raises(UserInputError):
        latent_factor_ratings(0, 20, 10)


# ---------------------------------------------------------------------------- learning


@pytest.mark.parametrize("path", ["fast", "keras"])
def test_path_learns_and_beats_global_mean(
    path: str, data: tuple[RatingArrays, RatingArrays], fitted: Callable[[str], Fitted]
) -> None:
    train, val = data
    result, seen, _ = fitted(path)
    history = result.history
    assert seen == [0, 1, 2, 3]
    assert list(history["epoch"]) == [0, 1, 2, 3]
    for column in ("loss", "val_loss", "mse", "val_mse", "mae", "val_mae", "val_loss_incl_l2", "lr", "seconds"):
        assert column in history.columns, column
    assert history["loss"].iloc[-1] < history["loss"].iloc[0] - 0.01
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    baseline = _mean_predictor_mse(train, val)
    assert history["val_mse"].min() < 0.8 * baseline
    # The returned model holds the best epoch's weights: its MSE is that epoch's.
    pred = _predict(result.model, val)
    mse = float(np.mean((pred - val.rating) ** 2))
    assert mse == pytest.approx(history["val_mse"].iloc[result.best_epoch], rel=1e-3)
    # val_loss is the data term: the L2 penalty is only in val_loss_incl_l2.
    assert np.all(history["val_loss_incl_l2"] > history["val_loss"])


def test_lazy_step_leaves_rows_outside_the_batch_untouched() -> None:
    # No XLA in the step tests: the head's compilation is what test_path_learns_and_beats_global_mean covers.
    params = ModelParams(embedding_size=8, start_lr=1e-2, jit_compile=False)
    model = build_model(50, 40, params)
    before = {w.path: w.numpy().copy() for w in model.weights}
    trainer = LazyAdamTrainer(model, params)
    batch = RatingArrays(np.array([1, 3, 3, 7], np.int32), np.array([2, 2, 5, 9], np.int32),
                         np.array([0.1, 0.9, 0.5, 0.7], np.float32))  # fmt: skip
    trainer.step(batch, tf.constant(1e-2))
    trainer.sync_model()

    for name, table, touched in (
        ("user_embedding/embeddings", trainer.users, [1, 3, 7]),
        ("anime_embedding/embeddings", trainer.anime, [2, 5, 9]),
    ):
        after, moment = table.variable.numpy(), table.values[:, 2, :]
        untouched = np.setdiff1d(np.arange(after.shape[0]), touched)
        np.testing.assert_array_equal(after[untouched], before[name][untouched])
        assert not np.any(moment[untouched])
        assert np.all(np.any(after[touched] != before[name][touched], axis=1))
        assert np.all(np.any(moment[touched] != 0, axis=1))
        assert np.all(table.slot_of == -1)  # the kernels' scratch space is left clean for the next step


def _dense_adam_case() -> tuple[ModelParams, RatingArrays]:
    params = ModelParams(embedding_size=8, l2_reg_factor=1e-3, start_lr=1e-2, jit_compile=False)
    rng = np.random.default_rng(0)
    users = np.concatenate([np.arange(20), rng.integers(0, 20, 44)]).astype(np.int32)
    anime = np.concatenate([np.arange(10), rng.integers(0, 10, 54)]).astype(np.int32)
    return params, RatingArrays(users, anime, rng.random(64).astype(np.float32))


def test_lazy_step_equals_dense_adam_when_every_row_is_in_the_batch() -> None:
    # With every row touched, lazy Adam + L2 on the touched rows is exactly
    # Keras' dense Adam + L2 on the whole table (duplicate rows in the batch add up).
    params, batch = _dense_adam_case()
    reference, ours = build_model(20, 10, params), build_model(20, 10, params)
    # Keras' own train step, run eagerly: tracing it for four steps cost ~1 s of CPU, the same ops run either way.
    reference.run_eagerly = True
    trainer = LazyAdamTrainer(ours, params)
    for _ in range(4):
        reference.train_on_batch({"user": batch.user_idx[:, None], "anime": batch.anime_idx[:, None]}, batch.rating[:, None])
        trainer.step(batch, tf.constant(1e-2))
    trainer.sync_model()
    for ref, got in zip(reference.weights, ours.weights):
        if ref.path == "dense/bias":
            continue  # BN cancels it: its gradient is rounding noise that Adam normalises
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=2e-5, err_msg=ref.path)
    assert int(trainer.iterations.numpy()) == 4


def test_lazy_step_does_not_depend_on_the_thread_count() -> None:
    import numba

    params, batch = _dense_adam_case()
    tables = []
    # All of Numba's threads (a thread per core), whatever the session runs with (conftest: one).
    previous = numba.get_num_threads()
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            trainer = LazyAdamTrainer(build_model(20, 10, params), params)
            for _ in range(3):
                trainer.step(batch, tf.constant(1e-2))
        finally:
            numba.set_num_threads(previous)
        tables.append((trainer.users.values.copy(), trainer.anime.values.copy()))
    for one, many in zip(*tables):
        np.testing.assert_array_equal(one, many)


# ---------------------------------------------------------------------------- checkpoints, stopping


def test_fast_path_resume_continues_from_saved_epoch(tmp_path: Path, data: tuple[RatingArrays, RatingArrays]) -> None:
    train, val = data
    # No XLA here: this is about checkpoints, and compiling three times is slow.
    base = {**SMALL, "patience": 10, "jit_compile": False}
    straight = train_model(train, val, N_USERS, N_ANIME, ModelParams(**{**base, "epochs": 2}), verbose=False)

    ckpt = tmp_path / "ckpt"
    first = train_model(train, val, N_USERS, N_ANIME, ModelParams(**{**base, "epochs": 1}), checkpoint_dir=ckpt, verbose=False)
    assert (ckpt / BEST_WEIGHTS).is_file() and (ckpt / LAST_WEIGHTS).is_file()
    state = json.loads((ckpt / STATE_JSON).read_text())
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert not list(ckpt.glob("*.tmp*"))  # atomic writes leave no temp files

    seen: list[int] = []
    resumed = train_model(
        train, val, N_USERS, N_ANIME, ModelParams(**{**base, "epochs": 2}), checkpoint_dir=ckpt, resume=True,
        on_epoch_end=lambda epoch, row: seen.append(epoch), verbose=False,
    )  # fmt: skip
    assert seen == [1]
    assert list(resumed.history["epoch"]) == [0, 1]
    assert resumed.history["val_loss"].iloc[0] == pytest.approx(first.history["val_loss"].iloc[0], rel=1e-6)
    # Same shuffles, weights and optimizer state: the resumed epoch is the uninterrupted one.
    assert resumed.history["val_loss"].iloc[1] == pytest.approx(straight.history["val_loss"].iloc[1], rel=1e-5)
    assert resumed.history["val_loss"].iloc[1] != pytest.approx(first.history["val_loss"].iloc[0], rel=1e-3)


def test_keras_path_resume_continues_from_saved_epoch(
    tmp_path: Path, data: tuple[RatingArrays, RatingArrays], fitted: Callable[[str], Fitted]
) -> None:
    train, val = data
    # The run to resume is the learning test's finished 4-epoch fit (a keras fit of its own cost ~2 s of CPU,
    # most of it tracing); a copy, so that fit's checkpoint stays as it was.
    checkpoint_dir = shutil.copytree(fitted("keras")[2], tmp_path / "ckpt")
    seen: list[int] = []
    resumed = train_model(
        train, val, N_USERS, N_ANIME, ModelParams(**{**SMALL, "training_path": "keras", "patience": 10, "epochs": 5}),
        checkpoint_dir=checkpoint_dir, resume=True, on_epoch_end=lambda epoch, row: seen.append(epoch), verbose=False,
    )  # fmt: skip
    assert seen == [4]
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3, 4]
    assert resumed.history["lr"].iloc[4] == pytest.approx(SMALL["min_lr"] + (SMALL["max_lr"] - SMALL["min_lr"]) * 0.7**4)
    # Optimizer state came back too: Adam's step counter continued.
    assert int(resumed.model.optimizer.iterations.numpy()) == 5 * int(np.ceil(len(train) / SMALL["batch_size"]))


@pytest.mark.parametrize("path", ["fast", "keras"])
def test_early_stopping_restores_best(path: str, tmp_path: Path, data: tuple[RatingArrays, RatingArrays]) -> None:
    train, val = data
    # mode='max' on a falling loss: epoch 0 is best, patience 1 stops after epoch 1.
    params = ModelParams(**{**SMALL, "epochs": 5, "mode": "max", "patience": 1, "training_path": path, "jit_compile": False})
    result = train_model(train, val, N_USERS, N_ANIME, params, checkpoint_dir=tmp_path, verbose=False)
    assert result.stopped_early
    assert result.best_epoch == 0
    assert len(result.history) == 2
    best = build_model(N_USERS, N_ANIME, params)
    best.load_weights(tmp_path / BEST_WEIGHTS)
    for got, want in zip(result.model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(got, want)
    state = json.loads((tmp_path / STATE_JSON).read_text())
    assert state["finished"] and state["stopped_early"]


def test_bad_inputs_are_user_errors(data: tuple[RatingArrays, RatingArrays]) -> None:
    train, val = data
    with pytest.raises(UserInputError, match="monitor"):
        train_model(train, val, N_USERS, N_ANIME, ModelParams(**SMALL, monitor="val_acc"), verbose=False)
    with pytest.raises(UserInputError, match="user indices"):
        train_model(train, val, N_USERS - 1, N_ANIME, ModelParams(**SMALL), verbose=False)
    empty = val.take(np.arange(0))
    with pytest.raises(UserInputError, match="validation set is empty"):
        train_model(train, empty, N_USERS, N_ANIME, ModelParams(**SMALL), verbose=False)


def test_lazy_step_grows_for_a_larger_batch_and_rejects_ids_outside_the_tables() -> None:
    params = ModelParams(embedding_size=8, batch_size=4, start_lr=1e-2, jit_compile=False)
    trainer = LazyAdamTrainer(build_model(50, 40, params), params)
    rng = np.random.default_rng(1)
    big = RatingArrays(rng.integers(0, 50, 64).astype(np.int32), rng.integers(0, 40, 64).astype(np.int32),
                       rng.random(64).astype(np.float32))  # fmt: skip
    trainer.step(big, tf.constant(1e-2))  # 16x the configured batch: the scratch space grows
    assert trainer.capacity == 64 and np.all(np.isfinite(trainer.users.values))
    before = trainer.users.values.copy()
    for users, anime, kind in (([1, 50], [0, 1], "user"), ([1, 2], [-1, 1], "anime")):
        bad = RatingArrays(np.array(users, np.int32), np.array(anime, np.int32), np.array([0.5, 0.5], np.float32))
        with pytest.raises(UserInputError, match=f"{kind} indices .* IdEncoder"):
            trainer.step(bad, tf.constant(1e-2))
    np.testing.assert_array_equal(trainer.users.values, before)  # nothing was written
