"""The MLflow Model Registry side of the pipeline: register each trained model, promote the better one.

- :func:`register_trained_model` (end of the neural_network step): logs the pyfunc model
  (:mod:`anime_recs.serve.pyfunc`) and registers it as ``anime_recs``; the new version
  gets the alias ``challenger``.
- :func:`promotion_gate` (end of the evaluate step): moves the alias ``champion`` to the
  challenger only when its test nDCG@k is not worse than the current champion's (both
  numbers are logged and kept as model-version tags).

Both are skipped with a warning, never a failure, when what they need is absent (no
anime table in the store, no registered model): a step run on its own still works.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from anime_recs.pipeline.tracking import StepContext
from anime_recs.recommend.loader import ANIME_ARTIFACT, SYNOPSES_ARTIFACT

logger = logging.getLogger(__name__)

NAME = "anime_recs"
NDCG_TAG = "anime_recs.test_ndcg"


def register_trained_model(ctx: StepContext, model_dir: Path, model_ref: str, example_user: int) -> dict[str, str]:
    """Log + register the pyfunc model of a step's fitted model; returns ``{"registered_model": "anime_recs/N"}``."""
    from anime_recs.core.errors import ArtifactError
    from anime_recs.serve.pyfunc import log_pyfunc_model

    ratings_ref = next((ref for name, ref in ctx.inputs.items() if name.startswith("preprocessed")), None)
    try:
        ratings = ctx.store.get(ratings_ref).file() if ratings_ref else None
        # The catalogue the model was published with (neural_network reads it as an input), never the newest.
        if ANIME_ARTIFACT not in ctx.inputs:
            logger.warning("not registering an MLflow model: the step read no anime table")
            return {}
        anime = ctx.store.get(ctx.inputs[ANIME_ARTIFACT]).file()
        synopses = ctx.store.get(ctx.inputs[SYNOPSES_ARTIFACT]).file() if SYNOPSES_ARTIFACT in ctx.inputs else None
    except ArtifactError as exc:
        logger.warning("not registering an MLflow model: %s", exc)
        return {}
    if ratings is None:
        logger.warning("not registering an MLflow model: the step read no preprocessed ratings")
        return {}
    version = log_pyfunc_model(model_dir, ratings, anime, synopses, model_ref, example_user, ratings_ref or "")
    print(f"registered MLflow model {NAME} version {version} (alias challenger) serving {model_ref}", flush=True)
    return {"registered_model": f"{NAME}/{version}"}


def promotion_gate(ctx: StepContext, ndcg: float, k: int) -> dict[str, float]:
    """Tag the challenger with its test nDCG@k; make it champion unless the champion's is higher.

    Returns:
        The logged numbers: ``gate.challenger_ndcg_at_k``, ``gate.champion_ndcg_at_k`` (NaN when
        there was no champion), ``gate.promoted`` (1/0); empty when the gate was skipped.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        challenger = client.get_model_version_by_alias(NAME, "challenger")
    except MlflowException:
        logger.warning("no registered model %s@challenger; skipping the promotion gate", NAME)
        return {}
    evaluated_on = next((ref for name, ref in ctx.inputs.items() if name.startswith("preprocessed")), "")
    trained_on = challenger.tags.get("anime_recs.input", "")
    if trained_on and evaluated_on and trained_on != evaluated_on:
        logger.warning("challenger %s was trained on %s but this evaluation read %s; skipping the promotion gate",
                       challenger.version, trained_on, evaluated_on)
        return {}
    client.set_model_version_tag(NAME, challenger.version, NDCG_TAG, f"{ndcg:.6f}")
    try:
        champion = client.get_model_version_by_alias(NAME, "champion")
        best = float(champion.tags.get(NDCG_TAG, "nan")) if champion.version != challenger.version else ndcg
    except MlflowException:
        champion, best = None, math.nan
    promoted = champion is None or math.isnan(best) or not ndcg < best
    if promoted:
        client.set_registered_model_alias(NAME, "champion", challenger.version)
    verdict = "promoted to champion" if promoted else f"kept champion version {champion.version}"  # type: ignore[union-attr]
    against = "no champion yet" if math.isnan(best) else f"champion {best:.4f}"
    print(f"promotion gate: challenger version {challenger.version} nDCG@{k} {ndcg:.4f} vs {against}: {verdict}", flush=True)
    metrics: dict[str, Any] = {f"gate.challenger_ndcg_at_{k}": ndcg, f"gate.champion_ndcg_at_{k}": best,
                               "gate.promoted": float(promoted)}
    ctx.log_metrics({key: value for key, value in metrics.items() if not math.isnan(value)})
    return metrics
