"""neural_network step: encode ids, split, fit the configured model family, publish it.

Input: the preprocessed stats artifact (its metadata holds the rating scaling).
Outputs (names from the ``model`` config group):
- ``model_artifact`` (type ``model``): ``model.json``, the id encoders, ``scaling.json`` and the
  held-out ``test_split.parquet``; for ``model=original`` also ``model.keras`` (+ ``model.h5`` when
  the name ends in ``.h5``);
- ``embeddings_artifact`` (``embeddings``): the fitted model as the recommenders load it
  (:func:`anime_recs.models.load_model`; numpy only);
- ``model=original`` only: ``weights_artifact`` (best weights), ``history_csv`` and ``loss_plot``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from anime_recs.core.options import validate_config
from anime_recs.core.encoding import RatingArrays
from anime_recs.core.errors import ArtifactError, UserInputError
from anime_recs.core.io import print_table, write_csv, write_json, write_parquet
from anime_recs.models import Interactions, RecommenderModel, build_model
from anime_recs.models.original import OriginalNetwork
from anime_recs.data.preprocess import Scaling, raw_ratings, stored_rating_range
from anime_recs.data.streaming import ParquetRatings, StreamedRows
from anime_recs.pipeline.tracking import StepContext
from anime_recs.recommend.loader import RAW_TYPE
from anime_recs.store.artifacts import ArtifactVersion

logger = logging.getLogger(__name__)


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


def _checkpoint_dir(ctx: StepContext, input_ref: str, params: dict[str, Any], resume: bool) -> Path:
    """A persistent folder (keyed by input and parameters) when resuming, else scratch."""
    if not resume:
        return ctx.workdir / "checkpoints"
    # epochs and patience may be raised to continue a run, so they are not part of its identity.
    identity = {k: v for k, v in params.items() if k not in ("epochs", "patience")}
    key = hashlib.sha256(json.dumps([input_ref, identity], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ctx.store.root / ".checkpoints" / f"neural_network-{key}"


def run_neural_network(ctx: StepContext, input_data: str, input_type: str, model_cfg: dict[str, Any], seed: int,
                       anime_df: str | None = None, synopses_df: str | None = None) -> dict[str, str]:
    """Fit the configured model family on the preprocessed artifact and publish it (see the module docstring).

    The anime table and synopses versions (``anime_df``, ``synopses_df``) are read as inputs, so the published
    model records them (``metadata["input"]``) and every answer joins the model with exactly those versions.

    Under ``model.multi_worker=true`` every worker trains, but only the chief (worker 0) logs metrics
    and publishes; the others return ``{}``.
    """
    validate_config({"model": model_cfg})  # e.g. model.test_size=1.5 when the step runs on its own
    artifact = ctx.use_artifact(input_data, input_type)
    if "scaling" not in artifact.metadata:
        raise UserInputError(f"{artifact.ref} has no rating scaling in its metadata; re-run the preprocess step")
    model = build_model(model_cfg)  # an unknown family or option stops here, before any work
    pin_catalogue(ctx, anime_df, synopses_df)
    scaling = Scaling(**artifact.metadata["scaling"])
    n_rows = pq.ParquetFile(artifact.file()).metadata.num_rows
    stream_above = model_cfg.get("stream_above_rows")
    if isinstance(model, OriginalNetwork) and stream_above is not None and n_rows > int(stream_above):
        return _run_streamed(ctx, model, artifact, n_rows, scaling, model_cfg, seed)
    frame = pd.read_parquet(artifact.file())
    frame["rating"] = raw_ratings(frame["rating"].to_numpy(), artifact.metadata)
    data = Interactions.from_frame(frame[["user_id", "anime_id", "rating"]], (scaling.rating_min, scaling.rating_max))
    train_pos, val_pos, test_pos = split_positions(len(data), float(model_cfg.get("test_size", 10_000)),
                                                   float(model_cfg.get("holdout_fraction", 0.1)), seed)
    _announce(ctx, model, len(data.users), len(data.items), len(train_pos) + len(val_pos), len(test_pos))
    chief = True
    if isinstance(model, OriginalNetwork):
        model.users, model.items, model.rating_scale = data.users, data.items, data.rating_scale
        arrays = model.scaled(data)
        chief = _fit_network(ctx, model, arrays.take(train_pos), arrays.take(val_pos), artifact.ref, model_cfg, seed)
    else:
        started = time.perf_counter()
        model.fit(data.take(np.concatenate([train_pos, val_pos])))
        print(f"fitted in {time.perf_counter() - started:.1f} s: {model.describe()}", flush=True)
    if not chief:
        return _not_chief()
    test = data.take(test_pos)
    fitted_mean = float(np.delete(data.ratings, test_pos).mean())
    metrics = _test_metrics(ctx, model, test.user_rows, test.item_rows, test.ratings, fitted_mean, scaling)
    return _publish(ctx, model_cfg, model, metrics, scaling, frame.iloc[test_pos])


def pin_catalogue(ctx: StepContext, anime_df: str | None, synopses_df: str | None) -> None:
    """Read the anime table and synopses versions as inputs, so the model records the catalogue it answers with.

    A store with no catalogue yet (a model trained before any download) is said once; such a model answers
    nothing by name until it is retrained after a download.
    """
    for ref in (anime_df, synopses_df):
        if not ref:
            continue
        try:
            ctx.use_artifact(ref, RAW_TYPE)
        except ArtifactError as exc:
            if not ref.endswith(":latest") or "no artifact named" not in str(exc):
                raise
            logger.warning("%s: the model records no catalogue version and answers nothing by name", exc)


def _run_streamed(ctx: StepContext, model: OriginalNetwork, artifact: ArtifactVersion, n_rows: int, scaling: Scaling,
                  model_cfg: dict[str, Any], seed: int) -> dict[str, str]:
    """The network trained from the parquet in batches (tables above ``model.stream_above_rows`` rows).

    The id encoders come from one pass over the id columns, the split from a hash of each row's
    position (:mod:`anime_recs.data.streaming`), so no step holds the whole table.
    """
    path, input_ref = artifact.file(), artifact.ref
    test_size = float(model_cfg.get("test_size", 10_000))
    reader = ParquetRatings(path, test_size / n_rows if test_size >= 1 else test_size,
                            float(model_cfg.get("holdout_fraction", 0.1)), seed,
                            rating_range=stored_rating_range(artifact.metadata))
    users, anime = reader.encoders()
    holdout = reader.holdout(users, anime)
    _announce(ctx, model, len(users), len(anime), holdout.train_rows + len(holdout.val), len(holdout.test))
    print(f"streaming {n_rows:,} rows from {path.name} (more than model.stream_above_rows)", flush=True)
    model.users, model.items, model.rating_scale = users, anime, (scaling.rating_min, scaling.rating_max)
    train = StreamedRows(reader, users, anime, holdout.train_rows, holdout.train_rating_sum / holdout.train_rows)
    if not _fit_network(ctx, model, train, holdout.val, input_ref, model_cfg, seed):
        return _not_chief()
    test = holdout.test
    fit_sum = holdout.train_rating_sum + float(holdout.val.rating.sum(dtype=np.float64))
    fitted_mean = float(scaling.to_raw(np.float64(fit_sum / (holdout.train_rows + len(holdout.val)))))
    metrics = _test_metrics(ctx, model, users.transform(test["user_id"].to_numpy()),
                            anime.transform(test["anime_id"].to_numpy()),
                            raw_ratings(test["rating"].to_numpy(), artifact.metadata).astype(np.float64),
                            fitted_mean, scaling)
    return _publish(ctx, model_cfg, model, metrics, scaling, test)


def _announce(ctx: StepContext, model: RecommenderModel, n_users: int, n_items: int, n_fit: int, n_test: int) -> None:
    print(f"model family {model.family}: {n_users:,} users x {n_items:,} anime; "
          f"fitting on {n_fit:,} rows, testing on {n_test:,}", flush=True)
    ctx.log_params({"model.family": model.family, **{f"model.{k}": v for k, v in _flat(model.params).items()}})


def _not_chief() -> dict[str, str]:
    print("not the chief worker: worker 0 logs the metrics and publishes the model; nothing published here", flush=True)
    return {}


def _test_metrics(ctx: StepContext, model: RecommenderModel, user_rows: np.ndarray, item_rows: np.ndarray,
                  ratings: np.ndarray, fitted_mean: float, scaling: Scaling) -> dict[str, float]:
    """Held-out numbers of the model and of the global mean (raw ``ratings``), logged and printed."""
    predicted = model.predict(user_rows, item_rows)
    actual = scaling.to_scaled(ratings)
    metrics = prediction_metrics(scaling.to_scaled(predicted), actual, scaling, "test")
    metrics.update(prediction_metrics(np.full(len(actual), scaling.to_scaled(fitted_mean)), actual, scaling,
                                      "global_mean"))
    if isinstance(model, OriginalNetwork):
        metrics["best_epoch"] = model.best_epoch
    ctx.log_metrics(metrics)
    print_table(pd.DataFrame([{"predictor": f"model ({model.family})", **{k[5:]: v for k, v in metrics.items() if k.startswith("test_")}},
                              {"predictor": "global mean", **{k[12:]: v for k, v in metrics.items() if k.startswith("global_mean_")}}]),
                "held-out test set (mse/bce on scaled ratings, rmse/mae on the rating scale)")
    return metrics


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested option groups (the hybrid's ``ranking`` / ``rating``) as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _fit_network(ctx: StepContext, model: OriginalNetwork, train: RatingArrays | StreamedRows, val: RatingArrays,
                 input_ref: str, model_cfg: dict[str, Any], seed: int) -> bool:
    """Train the original network with the step's validation split, checkpoints and per-epoch metrics.

    Returns:
        Whether this process is the chief, the one that logs and publishes (see
        :func:`anime_recs.models.network.architecture.is_chief`).
    """
    from anime_recs.models.network.architecture import is_chief, select_strategy

    model.params["seed"] = seed
    params = model.model_params()
    print(f"training on {len(train):,} rows, validating on {len(val):,}; path={params.training_path}", flush=True)
    strategy = select_strategy(bool(model_cfg.get("TPU_init", False)), str(model_cfg.get("TPU_address", "") or ""),
                               bool(model_cfg.get("multi_worker", False)))
    chief = is_chief(strategy)
    resume = bool(model_cfg.get("resume", False))

    def log_epoch(epoch: int, row: dict) -> None:
        if chief:
            ctx.log_metrics({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}, step=epoch)

    model.fit_arrays(train, val, strategy=strategy,
                     checkpoint_dir=_checkpoint_dir(ctx, input_ref, asdict(params), resume), resume=resume,
                     on_epoch_end=log_epoch)
    return chief


def _publish(ctx: StepContext, model_cfg: dict[str, Any], model: RecommenderModel, metrics: dict[str, float],
             scaling: Scaling, test_rows: pd.DataFrame) -> dict[str, str]:
    """Write every output file and publish the artifacts (the network also publishes weights, history and plot)."""
    from anime_recs.pipeline.plots import loss_curve

    out = ctx.workdir / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"family": model.family, "hyperparameters": model.params, "fit": model.fit_info, "metrics": metrics,
                "scaling": scaling.as_dict(), "input": ctx.inputs,
                **{k: model_cfg.get(k) for k in ("test_size", "holdout_fraction", "TPU_init")}}
    bundle_files = model.save(out / "bundle")
    model_files: dict[str, Path] = {"model.json": bundle_files["model.json"]}
    write_json(scaling.as_dict(), out / "scaling.json")
    write_parquet(test_rows.reset_index(drop=True), out / "test_split.parquet")
    model_files.update({"scaling.json": out / "scaling.json", "test_split.parquet": out / "test_split.parquet",
                        "user_ids.npy": bundle_files["user_ids.npy"], "anime_ids.npy": bundle_files["anime_ids.npy"]})
    outputs: list[tuple[str, str, dict[str, Path], str]] = []
    if isinstance(model, OriginalNetwork):
        model_files["model.keras"] = out / "model.keras"
        model.keras_model.save(model_files["model.keras"])  # .keras before .h5: Keras 3.15 drops the optimizer on .h5 saves
        if str(model_cfg["model_artifact"]).endswith(".h5"):
            model_files["model.h5"] = out / "model.h5"
            model.keras_model.save(model_files["model.h5"])
        weights = out / "best.weights.h5"
        model.keras_model.save_weights(weights)
        history = write_csv(model.history, out / "history.csv")
        plot = loss_curve(model.history, out / "loss.png")
        outputs += [("weights_artifact", "weights_type", {"best.weights.h5": weights}, "Best weights of the model"),
                    ("history_csv", "history_type", {"history.csv": history}, "Per-epoch training history"),
                    ("loss_plot", "figure_type", {"loss.png": Path(plot)}, "Loss per epoch")]
    outputs = [("model_artifact", "model_type", model_files, f"Trained {model.family} model: id encoders, scaling, held-out test rows"),
               *outputs,
               ("embeddings_artifact", "embeddings_type", bundle_files,
                f"The fitted {model.family} model as the recommenders load it (numpy, no TensorFlow)")]
    staged = {key: ctx.log_artifact(str(model_cfg[key]), str(model_cfg[type_key]), files, description, metadata)
              for key, type_key, files, description in outputs}
    refs = {key: artifact.ref for key, artifact in staged.items()}
    if model_cfg.get("register", True):  # the pyfunc model in the MLflow Model Registry (anime_recs@challenger)
        from anime_recs.pipeline.registry import register_trained_model

        # The store's own files (staged; publishing renames them), so MLflow's copy can be linked to them.
        bundle = staged["embeddings_artifact"].path
        refs.update(register_trained_model(ctx, bundle, refs["embeddings_artifact"], int(model.users.ids[0])))
    return refs
