"""The trained recommender as an MLflow pyfunc model: ``mlflow models serve -m models:/anime_recs@champion``.

:class:`AnimeRecsPyfunc` loads the numpy model folder, the ratings it was trained on
and the anime tables (no TensorFlow) into a :class:`~anime_recs.serve.service.Service`
and answers one question per call, chosen by the ``kind`` param:

==================  ===========================================  ==========================================
``kind``            input rows                                   output rows
==================  ===========================================  ==========================================
``similar_anime``   ``query`` = anime name or MAL_ID, per row    ``n`` similar anime per query
``similar_users``   ``query`` = user id, per row                 ``n`` similar users per query
``recommend``       ``query`` = user id, per row                 ``n`` recommendations per query
``new_user``        all rows together: ``query`` = anime,        ``n`` recommendations for that one person
                    ``rating`` = their rating
==================  ===========================================  ==========================================

Other params: ``n``, ``genres`` / ``types`` (comma-separated), ``min_score`` / ``max_score``
(0 and 10, the defaults, mean no bound). Bad input raises an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``, which the scoring server answers with HTTP 400.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from anime_recs.core.config import str_to_list
from anime_recs.core.errors import UserInputError, one_line
from anime_recs.recommend.newuser import ratings_from_pairs
from anime_recs.serve.service import Service

logger = logging.getLogger(__name__)

REGISTERED_NAME = "anime_recs"
KINDS = ("similar_anime", "similar_users", "recommend", "new_user")
PARAMS: dict[str, Any] = {"kind": "recommend", "n": 10, "genres": "", "types": "", "min_score": 0.0, "max_score": 10.0}
OUTPUT_COLUMNS = ("query", "rank", "id", "name", "score", "predicted_rating", "explanation", "genres", "type")


def _rows(query: str, answer: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The service's answer flattened to :data:`OUTPUT_COLUMNS`."""
    out = []
    for rank, r in enumerate(answer["results"], 1):
        is_user = kind == "similar_users"
        out.append({
            "query": query, "rank": rank, "id": int(r["user_id"] if is_user else r["MAL_ID"]),
            "name": str(r.get("favorite_animes", "")) if is_user else str(r["Name"]),
            "score": next((float(r[k]) for k in ("Similarity", "Rank score", "n_similar_users") if r.get(k) is not None), np.nan),
            "predicted_rating": float(r["Predicted rating"]) if r.get("Predicted rating") is not None else np.nan,
            "explanation": str(r.get("Explanation") or ""), "genres": str(r.get("Genres") or ""), "type": str(r.get("Type") or ""),
        })
    return out


def answer_frame(service: Service, frame: pd.DataFrame, params: dict[str, Any] | None) -> pd.DataFrame:
    """Answer a pyfunc call with ``service``: rows of :data:`OUTPUT_COLUMNS`.

    Raises:
        UserInputError: an unknown kind, missing columns, or anything the recommender rejects.
    """
    p = {**PARAMS, **(params or {})}
    kind = str(p["kind"])
    if kind not in KINDS:
        raise UserInputError(f"unknown kind {kind!r}; choose from: {', '.join(KINDS)}")
    if "query" not in frame.columns or len(frame) == 0:
        raise UserInputError("the input needs a non-empty 'query' column (anime name/MAL_ID or user id)")
    n = int(p["n"])
    genres, types = str_to_list(p["genres"]), str_to_list(p["types"])
    low = float(p["min_score"]) if float(p["min_score"]) > 0 else None
    high = float(p["max_score"]) if float(p["max_score"]) < 10 else None
    queries = frame["query"].astype(str).str.strip().tolist()
    if kind == "new_user":
        if "rating" not in frame.columns:
            raise UserInputError("kind new_user needs a 'rating' column next to 'query' (one anime per row)")
        ratings = pd.to_numeric(frame["rating"], errors="coerce")
        if ratings.isna().any():
            raise UserInputError("every rating must be a number, e.g. 8")
        pairs = [(int(q) if q.isdigit() else q, float(r)) for q, r in zip(queries, ratings)]
        result = service.new_user(ratings_from_pairs(pairs), n, genres, types, low, high)
        return pd.DataFrame(_rows("new_user", result, kind), columns=list(OUTPUT_COLUMNS))
    rows: list[dict[str, Any]] = []
    for query in queries:
        if kind == "similar_anime":
            result = service.similar_anime(query, n, genres, types)
        elif kind == "similar_users":
            result = service.similar_users(query, n)  # type: ignore[arg-type]
        else:
            result = service.recommend(query, n, genres, types, low, high)  # type: ignore[arg-type]
        rows += _rows(query, result, kind)
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


#: The distributions the served model imports (anime_recs.serve and what it reaches, faiss for large
#: user sets included). Listed rather than inferred: MLflow's inference imports the model in a
#: subprocess (~3 s per registration) and misses imports that only happen at scale.
SERVING_DISTRIBUTIONS = ("mlflow", "anime-recs", "cloudpickle", "numpy", "pandas", "pyarrow", "scipy", "faiss-cpu")


def serving_requirements() -> list[str]:
    """Pinned requirements of the served model: the installed version of each serving distribution.

    A distribution that is not installed as such is left out (in a step environment built by
    ``main.env_manager=uv``, anime_recs itself comes from the checkout on ``PYTHONPATH``).
    """
    pins = []
    for name in SERVING_DISTRIBUTIONS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            logger.debug("%s is not installed as a distribution; not listed in the model's requirements", name)
    return pins


class AnimeRecsPyfunc(mlflow.pyfunc.PythonModel):
    """The recommender behind MLflow's pyfunc interface (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        """Build the service from the logged artifacts (numpy model folder, ratings, anime, synopses)."""
        a = context.artifacts
        self.service = Service.from_files(Path(a["model"]), Path(a["ratings"]), Path(a["anime"]),
                                          Path(a["synopses"]) if a.get("synopses") else None,
                                          version=str(context.model_config.get("version", "pyfunc")))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Answer one question (``params["kind"]``) for the input rows."""
        try:
            return answer_frame(self.service, model_input, params)
        except UserInputError as exc:
            raise MlflowException(one_line(exc, 500), error_code=INVALID_PARAMETER_VALUE) from None


def log_pyfunc_model(model_dir: Path, ratings: Path, anime: Path, synopses: Path | None, version: str,
                     example_user: int, input_ref: str) -> Any:
    """Log the pyfunc model on the active run and register it as :data:`REGISTERED_NAME`; returns the model version.

    The new version gets the alias ``challenger`` (always the newest) and the tag
    ``anime_recs.model_ref`` = ``version`` (the artifact it serves) and ``anime_recs.input`` = the
    ratings artifact it was trained on (the evaluate step's promotion gate checks it).
    """
    from mlflow.models import infer_signature

    artifacts = {"model": str(model_dir), "ratings": str(ratings), "anime": str(anime)}
    if synopses is not None:
        artifacts["synopses"] = str(synopses)
    example = pd.DataFrame({"query": [str(example_user)], "rating": [np.nan]})
    service = Service.from_files(model_dir, ratings, anime, synopses, version)
    output = answer_frame(service, example, PARAMS)
    with warnings.catch_warnings():  # "integer columns cannot hold missing values": ids and ranks never miss
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, output, params=PARAMS)
    # One line per registration in the step's output, not a progress bar per artifact file.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    info = mlflow.pyfunc.log_model(name="anime_recs", python_model=AnimeRecsPyfunc(), artifacts=artifacts,
                                   signature=signature, input_example=example, model_config={"version": version},
                                   pip_requirements=serving_requirements(), registered_model_name=REGISTERED_NAME)
    client = mlflow.MlflowClient()
    registered = info.registered_model_version
    client.set_registered_model_alias(REGISTERED_NAME, "challenger", registered)
    client.set_model_version_tag(REGISTERED_NAME, registered, "anime_recs.model_ref", version)
    client.set_model_version_tag(REGISTERED_NAME, registered, "anime_recs.input", input_ref)
    logger.info("registered %s version %s (%s) as challenger", REGISTERED_NAME, registered, version)
    return registered
