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

import filecmp
import importlib.metadata
import logging
import os
import shutil
import tempfile
import urllib.parse
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
from anime_recs.recommend.newuser import id_or_name, ratings_from_pairs
from anime_recs.serve.service import Service

logger = logging.getLogger(__name__)

KINDS = ("similar_anime", "similar_users", "recommend", "new_user")
PARAMS: dict[str, Any] = {"kind": "recommend", "n": 10, "genres": "", "types": "", "min_score": 0.0, "max_score": 10.0}
OUTPUT_COLUMNS = ("query", "rank", "id", "name", "score", "predicted_rating", "explanation", "genres", "type")


def _rows(query: str, answer: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The service's answer flattened to :data:`OUTPUT_COLUMNS`."""
    out = []
    for rank, r in enumerate(answer["results"], 1):
        is_user = kind == "similar_users"
        out.append({
            "query": query, "rank": rank, "id": int(r["user_id"] if is_user else r["mal_id"]),
            "name": ", ".join(r["favorite_names"]) if is_user else str(r["name"]),
            "score": next((float(r[k]) for k in ("similarity", "match", "n_similar_users") if r.get(k) is not None), np.nan),
            "predicted_rating": float(r["predicted_rating"]) if r.get("predicted_rating") is not None else np.nan,
            "explanation": str(r.get("explanation") or ""), "genres": ", ".join(r.get("genres") or []),
            "type": str(r.get("type") or ""),
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
        pairs = [(id_or_name(q), float(r)) for q, r in zip(queries, ratings)]
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



def strict_json(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every missing float as ``None``, so the scoring server writes ``null``, never a bare ``NaN``."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype.kind == "f":
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


#: The distributions the served code imports (anime_recs.serve and what it reaches, faiss for large user
#: sets included; pyyaml reads the shipped config; numba compiles the neighbourhood's pool sums; rapidfuzz matches names;
#: defusedxml reads exports; psutil watches the pipeline). Listed rather than inferred: MLflow's inference imports the
#: model in a subprocess (~3 s per registration) and misses imports that only happen at scale. The project
#: itself is not a requirement: its code travels with the model (``code_paths``).
SERVING_DISTRIBUTIONS = ("mlflow", "numpy", "pandas", "pyarrow", "scipy", "pyyaml", "faiss-cpu", "numba", "rapidfuzz",
                         "defusedxml", "psutil")


def serving_requirements() -> list[str]:
    """Pinned requirements of the served model: the installed version of each serving distribution."""
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
        """Answer one question (``params["kind"]``) for the input rows; missing values are ``None``."""
        try:
            return strict_json(answer_frame(self.service, model_input, params))
        except UserInputError as exc:
            raise MlflowException(one_line(exc, 500), error_code=INVALID_PARAMETER_VALUE) from None


#: The models-from-code file MLflow runs to build the model (no pickle of project objects).
MODEL_CODE = Path(__file__).with_name("pyfunc_entry.py")
_PACKAGE = Path(__file__).resolve().parents[1]
#: Shipped with the model next to the package: the options' defaults (anime_recs.core.options reads it).
_CONFIG = _PACKAGE.parent / "config"


def _code_to_ship(workdir: Path) -> list[str]:
    """Copies of the package and its config without caches: what ``code_paths`` puts beside the model."""
    package = shutil.copytree(_PACKAGE, workdir / "anime_recs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    paths = [str(package)]
    if (_CONFIG / "config.yaml").is_file():
        paths.append(str(shutil.copytree(_CONFIG, workdir / "config", ignore=shutil.ignore_patterns("__pycache__"))))
    return paths


def link_copies(folder: Path, sources: list[Path]) -> int:
    """Replace each file under ``folder`` that is a byte-identical copy of a file under ``sources`` by a hard link.

    MLflow copies a model's artifacts into its store; linking makes the store of record and MLflow's
    copy one file on disk. Best effort: a file on another disk stays a copy. Returns the bytes saved.
    """
    by_key: dict[tuple[str, int], Path] = {}
    for source in sources:
        for path in ([source] if source.is_file() else source.rglob("*")):
            if path.is_file():
                by_key[(path.name, path.stat().st_size)] = path
    saved = 0
    for path in folder.rglob("*"):
        original = by_key.get((path.name, path.stat().st_size)) if path.is_file() and not path.is_symlink() else None
        if original is None or path.samefile(original) or not filecmp.cmp(path, original, shallow=False):
            continue
        temporary = path.with_name(f".{path.name}.link")
        try:
            os.link(original, temporary)
            os.replace(temporary, path)
            saved += path.stat().st_size
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            logger.debug("kept a copy of %s (%s)", path, exc)
    return saved


def _local_folder(uri: str) -> Path | None:
    """The local folder of a ``file:`` artifact location (None for remote stores)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    folder = Path(urllib.parse.unquote(parsed.path))
    return folder if folder.is_dir() else None


def log_pyfunc_model(name: str, model_dir: Path, ratings: Path, anime: Path, synopses: Path | None, version: str,
                     example_user: int, tags: dict[str, str]) -> Any:
    """Log the pyfunc model on the active run and register it as ``name``; returns the model version.

    Models-from-code (:data:`MODEL_CODE`) with the package shipped as ``code_paths``, so the model serves in
    any environment with its requirements (``--env-manager uv``). The new version gets the alias ``challenger``
    (always the newest), the tag ``anime_recs.model_ref`` = ``version`` (the artifact it serves) and ``tags``.
    """
    from mlflow.models import infer_signature

    artifacts = {"model": str(model_dir), "ratings": str(ratings), "anime": str(anime)}
    if synopses is not None:
        artifacts["synopses"] = str(synopses)
    example = pd.DataFrame({"query": [str(example_user)], "rating": [np.nan]})  # rating: optional (kind=new_user)
    service = Service.from_files(model_dir, ratings, anime, synopses, version)
    output = answer_frame(service, example, PARAMS)
    with warnings.catch_warnings():  # "integer columns cannot hold missing values": ids and ranks never miss
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, output, params=PARAMS)
    # One line per registration in the step's output, not a progress bar per artifact file.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="anime_recs_code_") as workdir:
        info = mlflow.pyfunc.log_model(name="anime_recs", python_model=str(MODEL_CODE), artifacts=artifacts,
                                       code_paths=_code_to_ship(Path(workdir)), signature=signature,
                                       input_example=example, model_config={"version": version},
                                       pip_requirements=serving_requirements(), registered_model_name=name)
    client = mlflow.MlflowClient()
    registered = info.registered_model_version
    client.set_registered_model_alias(name, "challenger", registered)
    for key, value in {"anime_recs.model_ref": version, **tags}.items():
        client.set_model_version_tag(name, registered, key, value)
    stored = _local_folder(mlflow.get_logged_model(info.model_id).artifact_location)
    if stored is not None:
        saved = link_copies(stored, [Path(p) for p in artifacts.values()])
        logger.info("model files linked to the artifact store, not copied: %.1f MB saved", saved / 1e6)
    logger.info("registered %s version %s (%s) as challenger", name, registered, version)
    return registered
