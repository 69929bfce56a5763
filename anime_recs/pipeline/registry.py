"""The MLflow Model Registry side of the pipeline: one registered model per data set, promoted like with like.

- :func:`register_trained_model` (end of the neural_network step): logs the pyfunc model
  (:mod:`anime_recs.serve.pyfunc`) and registers it under the name of the data set it was
  trained on (:func:`registered_name`: ``anime_recs`` for the embedded sample,
  ``anime_recs-<label>`` for other data, e.g. ``anime_recs-animelist``); the new version gets
  the alias ``challenger``.
- :func:`promotion_gate` (end of the evaluate step): moves the alias ``champion`` to the
  challenger only when the champion was tested on the same TEST split (checksum) and the
  challenger's nDCG@k is not worse. A champion tested on another split is kept and the log
  says so: numbers from different test sets are not compared.

Both are skipped with a warning, never a failure, when what they need is absent (no
anime table in the store, no registered model): a step run on its own still works.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from anime_recs.core.errors import ArtifactError
from anime_recs.data.download import dataset_label
from anime_recs.pipeline.tracking import StepContext
from anime_recs.recommend.loader import ANIME_ARTIFACT, RATINGS_ARTIFACT, SYNOPSES_ARTIFACT
from anime_recs.store.artifacts import ArtifactStore

logger = logging.getLogger(__name__)

#: The registered model of the embedded sample data; other data sets get ``NAME-<label>``.
NAME = "anime_recs"
NDCG_TAG = "anime_recs.test_ndcg"
CHECKSUM_TAG = "anime_recs.test_checksum"
DATASET_TAG = "anime_recs.dataset"
SOURCE_TAG = "anime_recs.source"
#: The lineage is followed at most this many artifacts back (preprocessed -> downloaded is one).
_LINEAGE_DEPTH = 4


def data_source(store: ArtifactStore, ratings_ref: str) -> str:
    """The raw source (``sample``, a path, a URL) a ratings artifact was made from, following recorded inputs.

    Returns ``"unknown"`` for artifacts published without lineage (older versions of this project).
    """
    frontier, seen = [ratings_ref], set()
    for _ in range(_LINEAGE_DEPTH):
        following = []
        for ref in frontier:
            if ref in seen:
                continue
            seen.add(ref)
            try:
                metadata = store.get(ref, verify=False).metadata
            except ArtifactError:
                continue
            if metadata.get("source"):
                return str(metadata["source"])
            following += [str(r) for r in metadata.get("input", {}).values()]
        frontier = following
    return "unknown"


def registered_name(label: str) -> str:
    """The registered model of a data set label: ``anime_recs`` for the sample, ``anime_recs-<label>`` otherwise."""
    return NAME if label == "sample" else f"{NAME}-{label}"


def dataset_of(store: ArtifactStore, ratings_ref: str) -> tuple[str, str]:
    """``(registered model name, source)`` of the data a ratings artifact holds."""
    source = data_source(store, ratings_ref)
    return registered_name("unknown" if source == "unknown" else dataset_label(source)), source


def register_trained_model(ctx: StepContext, model_dir: Path, model_ref: str, example_user: int) -> dict[str, str]:
    """Log + register the pyfunc model of a step's fitted model; returns ``{"registered_model": "<name>/N"}``."""
    from anime_recs.serve.pyfunc import log_pyfunc_model

    ratings_ref = ctx.inputs.get(RATINGS_ARTIFACT)
    if ratings_ref is None:
        logger.warning("not registering an MLflow model: the step read no %s", RATINGS_ARTIFACT)
        return {}
    if ANIME_ARTIFACT not in ctx.inputs:  # the catalogue the model was published with, never the newest
        logger.warning("not registering an MLflow model: the step read no anime table")
        return {}
    try:
        ratings = ctx.store.get(ratings_ref).file()
        anime = ctx.store.get(ctx.inputs[ANIME_ARTIFACT]).file()
        synopses = ctx.store.get(ctx.inputs[SYNOPSES_ARTIFACT]).file() if SYNOPSES_ARTIFACT in ctx.inputs else None
    except ArtifactError as exc:
        logger.warning("not registering an MLflow model: %s", exc)
        return {}
    name, source = dataset_of(ctx.store, ratings_ref)
    version = log_pyfunc_model(name, model_dir, ratings, anime, synopses, model_ref, example_user,
                               {"anime_recs.input": ratings_ref, DATASET_TAG: name, SOURCE_TAG: source[:500]})
    print(f"registered MLflow model {name} version {version} (alias challenger) serving {model_ref}; "
          f"data set {source!r}: each data set has its own registered model, so a champion is only ever "
          f"compared with models of the same data", flush=True)
    return {"registered_model": f"{name}/{version}"}


def promotion_gate(ctx: StepContext, ndcg: float, k: int, test_checksum: str) -> dict[str, Any]:
    """Tag the challenger with its test nDCG@k and split; make it champion unless a comparable champion is better.

    A champion is comparable when its ``anime_recs.test_checksum`` tag equals ``test_checksum`` (the
    same TEST rows of the same data). Returns the logged numbers: ``gate.challenger_ndcg_at_k``,
    ``gate.champion_ndcg_at_k`` (NaN when there is no comparable champion), ``gate.promoted`` (1/0),
    plus ``gate.registered_model``, ``gate.reason``; empty when the gate was skipped.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    evaluated_on = ctx.inputs.get(RATINGS_ARTIFACT, "")
    name, _ = dataset_of(ctx.store, evaluated_on) if evaluated_on else (NAME, "")
    client = mlflow.MlflowClient()
    try:
        challenger = client.get_model_version_by_alias(name, "challenger")
    except MlflowException:
        logger.warning("no registered model %s@challenger; skipping the promotion gate", name)
        return {}
    trained_on = challenger.tags.get("anime_recs.input", "")
    if trained_on and evaluated_on and trained_on != evaluated_on:
        logger.warning("challenger %s was trained on %s but this evaluation read %s; skipping the promotion gate",
                       challenger.version, trained_on, evaluated_on)
        return {}
    client.set_model_version_tag(name, challenger.version, NDCG_TAG, f"{ndcg:.6f}")
    client.set_model_version_tag(name, challenger.version, CHECKSUM_TAG, test_checksum)
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    champion_checksum = ""
    if champion is None:
        best, promoted, reason = math.nan, True, "no champion yet"
    elif champion.version == challenger.version:
        best, promoted, reason = ndcg, True, "the champion itself, re-evaluated"
        champion_checksum = test_checksum
    else:
        champion_checksum = champion.tags.get(CHECKSUM_TAG, "")
        if champion_checksum != test_checksum:
            best, promoted = math.nan, False
            reason = (f"champion version {champion.version} was tested on TEST split {champion_checksum or '(unrecorded)'}, "
                      f"this challenger on {test_checksum}: scores on different test sets are not compared, so the "
                      f"champion stays (set the alias by hand to change it)")
        else:
            best = float(champion.tags.get(NDCG_TAG, "nan"))
            promoted = math.isnan(best) or not ndcg < best
            reason = (f"champion version {champion.version} nDCG@{k} {best:.4f} on the same TEST split {test_checksum}: "
                      + ("not worse, promoted" if promoted else "better, kept"))
    if promoted:
        client.set_registered_model_alias(name, "champion", challenger.version)
    verdict = "promoted to champion" if promoted else f"kept champion version {champion.version}"  # type: ignore[union-attr]
    print(f"promotion gate ({name}): challenger version {challenger.version} nDCG@{k} {ndcg:.4f} on TEST split "
          f"{test_checksum}; {reason}: {verdict}", flush=True)
    metrics = {f"gate.challenger_ndcg_at_{k}": ndcg, f"gate.champion_ndcg_at_{k}": best, "gate.promoted": float(promoted)}
    ctx.log_metrics({key: value for key, value in metrics.items() if not math.isnan(value)})
    ctx.log_params({"gate.registered_model": name, "gate.challenger_test_checksum": test_checksum,
                    "gate.champion_test_checksum": champion_checksum or "none"})
    return {**metrics, "gate.registered_model": name, "gate.reason": reason}
