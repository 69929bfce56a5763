"""``anime-recs serve``: the recommenders over HTTP (FastAPI), plus a small page that uses them.

Endpoints (OpenAPI at ``/docs``, the spec at ``/openapi.json``):

========================================================  ==============================================
``GET  /api/info``                                        loaded version, family, genres, types
``GET  /api/search?q=``                                   anime names for search-as-you-type
``GET  /api/anime/similar?anime=``                        similar anime (MAL_ID or forgiving name)
``GET  /api/users/{user_id}/similar``                     similar users with their favourites
``GET  /api/users/{user_id}/recommendations``             the model's recommendations
``GET  /api/users/{user_id}/similar-user-recommendations`` what similar users favour ("7 of 10")
``GET  /api/users/{user_id}/preferences``                 favourite anime, genres, sources
``POST /api/new-user/recommendations``                    fold-in from a JSON list of ratings
``POST /api/new-user/mal-export``                         fold-in from an uploaded MyAnimeList XML export
========================================================  ==============================================

Bad input is a 404 (unknown user or anime), 413 (a body over its limit: JSON
:data:`~anime_recs.core.parsing.MAX_JSON_BYTES`, an upload :data:`MAX_UPLOAD_BYTES`) or 422 with
``{"detail": "<one line>"}``, never a 500. Every response carries the model ``version`` it was computed with; the
model is loaded once and swapped when a newer one is published (:mod:`.holder`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictInt, StringConstraints

from anime_recs.core.config import str_to_list
from anime_recs.core.errors import UserInputError, one_line
from anime_recs.core.parsing import MAX_FILE_BYTES, MAX_JSON_BYTES, MAX_NAME_CHARS
from anime_recs.recommend.newuser import MAX_RATINGS, ratings_from_mal_xml, ratings_from_pairs
from anime_recs.serve.schema import (InfoAnswer, NewUserAnswer, PreferencesAnswer, RecommendationsAnswer, SearchAnswer,
                                     SimilarAnimeAnswer, SimilarUserRecommendationsAnswer, SimilarUsersAnswer)
from anime_recs.serve.holder import ModelHolder
from anime_recs.serve.service import DEFAULTS, MAX_N, Service

logger = logging.getLogger(__name__)

#: Largest MAL export accepted (a list of ~20,000 anime is about 10 MB).
MAX_UPLOAD_BYTES = MAX_FILE_BYTES
#: Room for the multipart envelope around an upload.
_MULTIPART_SLACK = 64 << 10
_NOT_FOUND = ("unknown user id", "unknown anime id", "no anime named")


class Problem(BaseModel):
    """Why a request failed, in one line."""

    detail: str


class Rating(BaseModel):
    """One rated anime."""

    anime: StrictInt | Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)] = Field(
        description=f"MAL_ID or name (forgiving of case, accents and symbols; at most {MAX_NAME_CHARS} characters)")
    rating: float = Field(description="on the data's scale (1-10 for MyAnimeList)", allow_inf_nan=False)


class NewUserRequest(BaseModel):
    """Ratings of someone the model has never seen, and the filters of their recommendations."""

    ratings: list[Rating] = Field(max_length=MAX_RATINGS)
    n: int = Field(DEFAULTS["recommend"], ge=1, le=MAX_N)
    genres: list[str] = Field(default_factory=list, description="keep anime with ANY of these genres")
    types: list[str] = Field(default_factory=list, description="keep anime of these types (TV, Movie, ...)")
    min_score: float | None = Field(None, allow_inf_nan=False)
    max_score: float | None = Field(None, allow_inf_nan=False)


ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "unknown user or anime"},
                                           413: {"model": Problem, "description": "request body over its size limit"},
                                           422: {"model": Problem, "description": "bad input (one-line reason)"}}
N = Annotated[int, Query(ge=1, le=MAX_N, description="how many results")]
UserId = Annotated[int, PathParam(ge=0, le=2**62, description="a user id the model was trained on")]
Listed = Annotated[list[str], Query(description="repeat or comma-separate")]
Score = Annotated[float | None, Query(allow_inf_nan=False)]


def _flat(values: list[str]) -> list[str]:
    return [item for value in values for item in str_to_list(value)]


def _problem(status: int, message: object) -> JSONResponse:
    return JSONResponse({"detail": one_line(message, 500)}, status_code=status)


#: Swagger UI and ReDoc, served by the app itself (the fastapi-offline package ships them with their licences):
#: FastAPI's own pages load them from a CDN, so offline they were blank.
DOCS_ASSETS = "/static-docs"


def _api_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their scripts and styles from this server."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=str(app.openapi_url), title=f"{app.title} API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=str(app.openapi_url), title=f"{app.title} API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                              with_google_fonts=False)


class BodyLimit:
    """ASGI middleware: a request body over its limit is answered 413 in one line, and never read past it.

    The limit is :data:`MAX_JSON_BYTES`, or :data:`MAX_UPLOAD_BYTES` (plus the multipart envelope) for
    multipart uploads. A declared ``Content-Length`` over it is refused at once; otherwise the body is
    read here (at most the limit, chunked or not) and handed on to the app.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        upload = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = MAX_UPLOAD_BYTES + _MULTIPART_SLACK if upload else MAX_JSON_BYTES
        too_large = _problem(413, f"the request body is larger than {limit >> 20} MB; "
                                  + ("send a smaller export" if upload else "send fewer or shorter ratings"))
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            event = await receive()
            if event["type"] != "http.request":
                chunks.append(event)  # a disconnect: hand it on as it is
                break
            size += len(event.get("body", b""))
            if size > limit:
                await too_large(scope, receive, send)
                return
            chunks.append(event)
            if not event.get("more_body", False):
                break
        replay = iter(chunks)

        async def buffered() -> dict[str, Any]:
            return next(replay, None) or await receive()

        await self.app(scope, buffered, send)


def create_app(holder: ModelHolder) -> FastAPI:
    """The FastAPI app answering from ``holder``'s current model version."""
    app = FastAPI(title="anime_recs", version="1", description="Anime recommendations from MyAnimeList ratings. "
                  "Every answer names the model version it came from.", docs_url=None, redoc_url=None)
    _api_docs(app)
    app.add_middleware(BodyLimit)

    @app.exception_handler(UserInputError)
    async def user_error(_: Request, exc: UserInputError) -> JSONResponse:
        text = str(exc)
        return _problem(404 if text.startswith(_NOT_FOUND) else 422, text)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _problem(422, f"{where}: {first.get('msg', 'invalid input')}")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")  # a bug: logged in full, answered in one line
        return _problem(500, f"internal error ({type(exc).__name__}); the server log has the details")

    def ask(question: Callable[[Service], dict[str, Any]]) -> dict[str, Any]:
        return question(holder.current())  # one version per response, whatever reloads meanwhile

    # The routes are ``async def``: each answer is a few ms of CPU, so handing it to a thread pool (as FastAPI does
    # for ``def`` routes) only added a thread switch (~0.2 ms a request on a trivial route over uvicorn) and, under
    # 50 concurrent requests, threads contending for the GIL; ``--workers`` gives the parallelism.

    @app.get("/api/info", responses=ERRORS, response_model=InfoAnswer)
    async def info() -> dict[str, Any]:
        """Loaded model version, family, sizes, genres and types."""
        return ask(lambda s: s.info())

    @app.get("/api/search", responses=ERRORS, response_model=SearchAnswer)
    async def search(q: Annotated[str, Query(max_length=200, description="what was typed so far")], n: N = 8) -> dict[str, Any]:
        """Anime whose names start with (or are spelt close to) ``q``."""
        return ask(lambda s: s.search(q, n))

    @app.get("/api/anime/similar", responses=ERRORS, response_model=SimilarAnimeAnswer)
    async def similar_anime(anime: Annotated[str, Query(max_length=200, description="MAL_ID or name")], n: N = DEFAULTS["similar_anime"],
                            genres: Listed = [], types: Listed = []) -> dict[str, Any]:  # noqa: B006 - FastAPI copies defaults
        """Anime most similar to ``anime`` (cosine of the model's item representations)."""
        return ask(lambda s: s.similar_anime(anime, n, _flat(genres), _flat(types)))

    @app.get("/api/users/{user_id}/similar", responses=ERRORS, response_model=SimilarUsersAnswer)
    async def similar_users(user_id: UserId, n: N = DEFAULTS["similar_users"], num_faves: N = DEFAULTS["num_faves"]) -> dict[str, Any]:
        """Users most similar to ``user_id``, with their favourite anime."""
        return ask(lambda s: s.similar_users(user_id, n, num_faves))

    @app.get("/api/users/{user_id}/recommendations", responses=ERRORS, response_model=RecommendationsAnswer)
    async def recommendations(user_id: UserId, n: N = DEFAULTS["recommend"], genres: Listed = [], types: Listed = [],  # noqa: B006
                              min_score: Score = None, max_score: Score = None) -> dict[str, Any]:
        """Unseen anime the model ranks highest for ``user_id``, with predicted ratings."""
        return ask(lambda s: s.recommend(user_id, n, _flat(genres), _flat(types), min_score, max_score))

    @app.get("/api/users/{user_id}/similar-user-recommendations", responses=ERRORS, response_model=SimilarUserRecommendationsAnswer)
    async def similar_user_recommendations(user_id: UserId, n: N = DEFAULTS["similar_user_recs"], n_similar: N = DEFAULTS["n_similar"],
                                           genres: Listed = []) -> dict[str, Any]:  # noqa: B006
        """Unseen anime the most similar users favour, with "k of n similar users"."""
        return ask(lambda s: s.recommend_from_similar_users(user_id, n, n_similar, _flat(genres)))

    @app.get("/api/users/{user_id}/preferences", responses=ERRORS, response_model=PreferencesAnswer)
    async def preferences(user_id: UserId,
                          favorite_percentile: Annotated[float, Query(ge=0, le=1)] = DEFAULTS["favorite_percentile"]) -> dict[str, Any]:
        """The user's favourite anime and how often each genre and source occurs among them."""
        return ask(lambda s: s.preferences(user_id, favorite_percentile))

    @app.post("/api/new-user/recommendations", responses=ERRORS, response_model=NewUserAnswer)
    async def new_user(body: NewUserRequest) -> dict[str, Any]:
        """Recommendations for someone the model has never seen, from their ratings (fold-in, no retraining)."""
        ratings = ratings_from_pairs((r.anime, r.rating) for r in body.ratings)
        return ask(lambda s: s.new_user(ratings, body.n, body.genres, body.types, body.min_score, body.max_score))

    @app.post("/api/new-user/mal-export", responses=ERRORS, response_model=NewUserAnswer)
    async def new_user_mal(file: Annotated[UploadFile, File(description="animelist.xml exported from MyAnimeList")],
                           n: N = DEFAULTS["recommend"], genres: Listed = [], types: Listed = []) -> dict[str, Any]:  # noqa: B006
        """Recommendations from an uploaded MyAnimeList XML export (scores of 0 only mark anime as seen)."""
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise UserInputError(f"the export is larger than {MAX_UPLOAD_BYTES >> 20} MB; send a smaller list")
        ratings = ratings_from_mal_xml(data)
        return ask(lambda s: s.new_user(ratings, n, _flat(genres), _flat(types)))

    static = resources.files("anime_recs.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    return app


#: How ``anime-recs serve --workers N`` tells each worker process what to serve (JSON, see :func:`app_from_env`).
SERVE_ENV = "ANIME_RECS_SERVE"


def app_from_env() -> FastAPI:
    """The app of one worker of ``anime-recs serve --workers N`` (uvicorn calls it in each worker process).

    ``$ANIME_RECS_SERVE`` holds ``{"root", "model", "reload_every"}`` (a store, as :func:`serve`) or
    ``{"files": {"model", "ratings", "anime", "synopses", "version"}}`` (fixed files, as the benchmark serves them).
    Each worker loads the model itself; its large arrays are memory-mapped from the read-only artifact files,
    so the workers share those pages.
    """
    from anime_recs.serve.service import Service

    spec = json.loads(os.environ[SERVE_ENV])
    files = spec.get("files")
    if files:
        service = Service.from_files(Path(files["model"]), Path(files["ratings"]), Path(files["anime"]),
                                     Path(files["synopses"]) if files.get("synopses") else None, files["version"])
        holder = ModelHolder(loader=lambda root, ref: service, pinned=files["version"])
    else:
        holder = ModelHolder(spec["root"], spec["model"])
        holder.start(float(spec["reload_every"]))
    return create_app(holder)


def serve(root: Path | str | None, host: str, port: int, model: str | None, reload_every: float, workers: int = 1) -> None:
    """Load the model, start the reload thread, run uvicorn until interrupted (``workers`` processes when > 1)."""
    import uvicorn

    if workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {workers}")
    holder = ModelHolder(root, model)  # loads once here: a missing or damaged model is one line before any worker starts
    print(f"serving {holder.current().version} on http://{host}:{port}/ with {workers} worker(s) (API docs: /docs)", flush=True)
    if workers > 1:
        del holder  # each worker loads its own (memory-mapped) copy
        from anime_recs.serve.workers import serve_workers

        serve_workers({"root": None if root is None else str(root), "model": model, "reload_every": reload_every},
                      SERVE_ENV, host, port, workers)
        return
    holder.start(reload_every)
    try:
        uvicorn.run(create_app(holder), host=host, port=port, log_level="warning")
    finally:
        holder.stop()
