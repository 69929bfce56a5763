"""neural_network step: encode ids, split, train the embedding model, publish it.

Input: the preprocessed stats artifact (its metadata holds the rating scaling).
Outputs (names from the ``model`` config group):
- ``model_artifact`` (type ``model``): ``model.keras`` (+ ``model.h5`` when the name ends in
  ``.h5``), the id encoders, ``scaling.json`` and the held-out ``test_split.parquet``;
- ``weights_artifact`` (``weights``): the best weights;
- ``history_csv`` (``history``) and ``loss_plot`` (``figure``): per-epoch history and its plot;
- ``embeddings_artifact`` (``embeddings``): the bundle the recommenders load (see :mod:`anime_recs.bundle`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import ModelBundle
from ..encoding import IdEncoder, RatingArrays
from ..errors import UserInputError
from ..io import print_table, write_csv, write_json, write_parquet
from ..preprocess import Scaling
from ..tracking import StepContext

logger = logging.getLogger(__name__)


def encode_frame(frame: pd.DataFrame) -> tuple[RatingArrays, IdEncoder, IdEncoder]:
    """Fit the id encoders on the preprocessed frame and encode every row."""
    users = IdEncoder(frame["user_id"].to_numpy(), "user")
    anime = IdEncoder(frame["anime_id"].to_numpy(), "anime")
    arrays = RatingArrays(users.transform(frame["user_id"].to_numpy()), anime.transform(frame["anime_id"].to_numpy()),
                          frame["rating"].to_numpy(dtype=np.float32))
    return arrays, users, anime


def split_positions(n_rows: int, test_size: float, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle row positions and cut train / validation / held-out test.

    ``test_size`` is the validation set (the original's name for it): a row
    count when >= 1, else a fraction. ``holdout_fraction`` of the rows form
    the test set, used only for the final numbers.
    """
    n_val = int(test_size) if test_size >= 1 else int(round(test_size * n_rows))
    n_test = int(round(holdout_fraction * n_rows))
    if not 0 <= holdout_fraction < 1:
        raise UserInputError(f"model.holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if n_val < 1 or n_rows - n_val - n_test < max(n_val, 1):
        raise UserInputError(
            f"model.test_size={test_size} and model.holdout_fraction={holdout_fraction} leave too few of the {n_rows:,} rows "
            "for training; lower them"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def prediction_metrics(predicted: np.ndarray, actual: np.ndarray, scaling: Scaling, prefix: str) -> dict[str, float]:
    """MSE/BCE on the scaled ratings and RMSE/MAE on the raw (1..10) scale."""
    p = np.clip(np.asarray(predicted, dtype=np.float64).ravel(), 1e-7, 1 - 1e-7)
    y = np.asarray(actual, dtype=np.float64).ravel()
    raw_error = scaling.to_raw(p) - scaling.to_raw(y)
    return {
        f"{prefix}_mse": float(np.mean((p - y) ** 2)),
        f"{prefix}_bce": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        f"{prefix}_rmse": float(np.sqrt(np.mean(raw_error**2))),
        f"{prefix}_mae": float(np.mean(np.abs(raw_error))),
    }


def model_predict(model: Any, data: RatingArrays) -> np.ndarray:
    """The model's scaled predictions for encoded rows."""
    return model.predict({"user": data.user_idx, "anime": data.anime_idx}, batch_size=65_536, verbose=0).ravel()


def _checkpoint_dir(ctx: StepContext, input_ref: str, params: dict[str, Any], resume: bool) -> Path:
    """A persistent folder (keyed by input and parameters) when resuming, else scratch."""
    if not resume:
        return ctx.workdir / "checkpoints"
    # epochs and patience may be raised to continue a run, so they are not part of its identity.
    identity = {k: v for k, v in params.items() if k not in ("epochs", "patience")}
    key = hashlib.sha256(json.dumps([input_ref, identity], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ctx.store.root / ".checkpoints" / f"neural_network-{key}"


def run_neural_network(ctx: StepContext, input_data: str, input_type: str, model_cfg: dict[str, Any], seed: int) -> dict[str, str]:
    """Train on the preprocessed artifact and publish model, weights, history, plot and embeddings."""
    artifact = ctx.use_artifact(input_data, input_type)
    if "scaling" not in artifact.metadata:
        raise UserInputError(f"{artifact.ref} has no rating scaling in its metadata; re-run the preprocess step")
    # TensorFlow takes seconds to import: only after the inputs are known to be good.
    from ..model import ModelParams, select_strategy
    from ..training import train_model

    scaling = Scaling(**artifact.metadata["scaling"])
    frame = pd.read_parquet(artifact.file())
    arrays, user_encoder, anime_encoder = encode_frame(frame)
    train_pos, val_pos, test_pos = split_positions(len(arrays), float(model_cfg.get("test_size", 10_000)),
                                                   float(model_cfg.get("holdout_fraction", 0.1)), seed)
    train, val, test = arrays.take(train_pos), arrays.take(val_pos), arrays.take(test_pos)
    params = ModelParams.from_mapping({**model_cfg, "seed": seed})
    print(f"training on {len(train):,} rows, validating on {len(val):,}, testing on {len(test):,}; "
          f"{len(user_encoder):,} users x {len(anime_encoder):,} anime; path={params.training_path}", flush=True)
    ctx.log_params({f"model.{k}": v for k, v in asdict(params).items()})
    strategy = select_strategy(bool(model_cfg.get("TPU_init", False)), str(model_cfg.get("TPU_address", "") or ""),
                               bool(model_cfg.get("multi_worker", False)))
    resume = bool(model_cfg.get("resume", False))
    result = train_model(train, val, len(user_encoder), len(anime_encoder), params, strategy=strategy,
                         checkpoint_dir=_checkpoint_dir(ctx, artifact.ref, asdict(params), resume), resume=resume,
                         on_epoch_end=lambda epoch, row: ctx.log_metrics(
                             {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}, step=epoch))

    metrics = prediction_metrics(model_predict(result.model, test), test.rating, scaling, "test")
    baseline = np.full(len(test), float(train.rating.mean()))
    metrics.update(prediction_metrics(baseline, test.rating, scaling, "global_mean"))
    metrics["best_epoch"] = result.best_epoch
    ctx.log_metrics(metrics)
    print_table(pd.DataFrame([{"predictor": "model", **{k[5:]: v for k, v in metrics.items() if k.startswith("test_")}},
                              {"predictor": "global mean", **{k[12:]: v for k, v in metrics.items() if k.startswith("global_mean_")}}]),
                "held-out test set (mse/bce on scaled ratings, rmse/mae on the 1-10 scale)")
    return _publish(ctx, model_cfg, result, params, metrics, scaling, user_encoder, anime_encoder, frame.iloc[test_pos])


def _publish(ctx: StepContext, model_cfg: dict[str, Any], result: Any, params: Any, metrics: dict[str, float], scaling: Scaling,
             user_encoder: IdEncoder, anime_encoder: IdEncoder, test_rows: pd.DataFrame) -> dict[str, str]:
    """Write every output file and publish the five artifacts."""
    from ..embeddings import PredictionHead, extract_embeddings
    from ..plots import loss_curve

    out = ctx.workdir / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"hyperparameters": {**asdict(params), **{k: model_cfg.get(k) for k in ("test_size", "holdout_fraction", "TPU_init")}},
                "metrics": metrics, "scaling": scaling.as_dict(), "input": ctx.inputs}
    model_files = {"model.keras": out / "model.keras"}
    result.model.save(model_files["model.keras"])  # .keras before .h5: Keras 3.15 drops the optimizer on .h5 saves
    model_name = str(model_cfg["model_artifact"])
    if model_name.endswith(".h5"):
        model_files["model.h5"] = out / "model.h5"
        result.model.save(model_files["model.h5"])
    user_encoder.save(out / "user_ids.npy")
    anime_encoder.save(out / "anime_ids.npy")
    write_json(scaling.as_dict(), out / "scaling.json")
    write_parquet(test_rows.reset_index(drop=True), out / "test_split.parquet")
    model_files.update({name: out / name for name in ("user_ids.npy", "anime_ids.npy", "scaling.json", "test_split.parquet")})
    weights = out / "best.weights.h5"
    result.model.save_weights(weights)
    history = write_csv(result.history, out / "history.csv")
    plot = loss_curve(result.history, out / "loss.png")
    users, anime = extract_embeddings(result.model)
    bundle_files = ModelBundle(users, anime, user_encoder, anime_encoder, PredictionHead.from_model(result.model), scaling).save(out / "bundle")

    refs = {}
    for key, type_key, files, description in (
        ("model_artifact", "model_type", model_files, "Trained Keras model with its id encoders and held-out test rows"),
        ("weights_artifact", "weights_type", {"best.weights.h5": weights}, "Best weights of the model"),
        ("history_csv", "history_type", {"history.csv": history}, "Per-epoch training history"),
        ("loss_plot", "figure_type", {"loss.png": Path(plot)}, "Loss per epoch"),
        ("embeddings_artifact", "embeddings_type", bundle_files, "Normalised embeddings, encoders and prediction head"),
    ):
        refs[key] = ctx.log_artifact(str(model_cfg[key]), str(model_cfg[type_key]), files, description, metadata).ref
    return refs
