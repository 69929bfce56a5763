"""``anime-recs similar / recommend / users / serve``: ask the newest (or a named) model without running a step.

    anime-recs similar "cowboy bebop" -n 10 [--genres Action] [--types TV] [--json]
    anime-recs recommend --user 1167 | --ratings my_ratings.csv | --mal-export animelist.xml [-n 10] [--json]
    anime-recs users --user 1167 [-n 10] [--json]
    anime-recs serve [--host 127.0.0.1] [--port 8000]

Each reads a model version and the data it was trained on from the artifact store
(:func:`anime_recs.serve.service.load_service`); none imports TensorFlow or MLflow,
so an answer takes about a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from anime_recs.core.config import str_to_list
from anime_recs.core.io import format_table
from anime_recs.core.options import answer_defaults
from anime_recs.core.parsing import read_capped

DEFAULTS = answer_defaults()


def _common(parser: argparse.ArgumentParser, n: int) -> None:
    parser.add_argument("-n", type=int, default=n, help="how many results")
    parser.add_argument("--model", default=None, help="model version: anime_nn_embeddings:vN, vN or N (default: newest)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--genres", default=None, help="comma-separated genres (any of them)")
    parser.add_argument("--types", default=None, help="comma-separated types (TV, Movie, ...)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the query and serve commands on the ``anime-recs`` parser."""
    similar = commands.add_parser("similar", help="anime most similar to one anime (name or MAL_ID)")
    similar.add_argument("anime", help="name (forgiving) or MAL_ID")
    _common(similar, DEFAULTS["similar_anime"])
    _filters(similar)
    recommend = commands.add_parser("recommend", help="what to watch next: a known user, a rating list or a MAL export")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, help="a user id the model was trained on")
    who.add_argument("--ratings", type=Path, help="CSV with anime_id (or name) and rating columns")
    who.add_argument("--mal-export", type=Path, help="MyAnimeList XML export (animelist.xml)")
    _common(recommend, DEFAULTS["recommend"])
    _filters(recommend)
    recommend.add_argument("--min-score", type=float, default=None, help="lowest MyAnimeList score")
    recommend.add_argument("--max-score", type=float, default=None, help="highest MyAnimeList score")
    users = commands.add_parser("users", help="users most similar to a user, with their favourites")
    users.add_argument("--user", type=int, required=True, help="a user id the model was trained on")
    _common(users, DEFAULTS["similar_users"])
    serve = commands.add_parser("serve", help="HTTP API and web page (OpenAPI at /docs)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--model", default=None, help="serve this version and never reload (default: newest, reloaded)")
    serve.add_argument("--reload-every", type=float, default=10.0, help="seconds between checks for a newer model")
    serve.add_argument("--workers", type=int, default=None,
                       help="server processes answering in parallel, sharing the memory-mapped model (default: one per core)")


def _read(path: Path) -> bytes:
    """The rating list file, at most :data:`~anime_recs.core.parsing.MAX_FILE_BYTES` of it (``/dev/zero`` included)."""
    return read_capped(path, what="rating list")


def answer(args: argparse.Namespace, root: str | None) -> dict[str, Any]:
    """Run one query command; returns the JSON-ready answer."""
    from anime_recs.recommend.newuser import ratings_from_csv, ratings_from_mal_xml
    from anime_recs.serve.service import load_service

    genres, types = str_to_list(getattr(args, "genres", None)), str_to_list(getattr(args, "types", None))
    service = load_service(root, args.model)
    if args.group == "similar":
        return service.similar_anime(args.anime, args.n, genres, types)
    if args.group == "users":
        return service.similar_users(args.user, args.n)
    bounds = {"min_score": args.min_score, "max_score": args.max_score}
    if args.user is not None:
        return service.recommend(args.user, args.n, genres, types, **bounds)
    ratings = ratings_from_csv(_read(args.ratings)) if args.ratings else ratings_from_mal_xml(_read(args.mal_export))
    return service.new_user(ratings, args.n, genres, types, **bounds)


#: The columns of an answer a person reads in the terminal, and their headers (the JSON has them all).
TABLE_COLUMNS = {"mal_id": "MAL_ID", "user_id": "user", "name": "title", "type": "type", "episodes": "episodes",
                 "genres": "genres", "similarity": "similarity", "match": "match", "predicted_rating": "predicted rating",
                 "n_similar_users": "similar users", "score": "MAL score", "n_ratings": "ratings",
                 "favorite_names": "favourites", "explanation": "why"}


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """An answer's rows as the terminal shows them: :data:`TABLE_COLUMNS` in that order, under their headers."""
    shown = [column for column in TABLE_COLUMNS if column in frame.columns]
    return frame[shown].rename(columns=TABLE_COLUMNS)


def run(args: argparse.Namespace, root: str | None) -> int:
    """Entry for the commands of :func:`add_commands`; returns the exit code."""
    if args.group == "serve":
        from anime_recs.models.linalg import workers
        from anime_recs.serve.app import serve

        serve(root, args.host, args.port, args.model, args.reload_every,
              workers() if args.workers is None else args.workers)
        return 0
    result = answer(args, root)
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return 0
    frame = readable(pd.DataFrame(result["results"]))
    title = {"similar": lambda: f"anime similar to {result['query']['name']} (MAL_ID {result['query']['mal_id']})",
             "users": lambda: f"users similar to user {result['query_user']}",
             "recommend": lambda: (f"recommendations for user {result['query_user']}" if "query_user" in result
                                   else f"recommendations from your {result['used']} ratings")}[args.group]()
    print(f"{title}  [{result['version']}]\n{format_table(frame, max_rows=args.n)}")
    for note in (result.get("note"), result.get("skipped") and f"skipped (not in the model or the anime table): {', '.join(result['skipped'][:10])}"):
        if note:
            print(f"note: {note}")
    return 0


def main_exit(args: argparse.Namespace, root: str | None) -> None:
    """Run and exit with the code (kept out of :func:`run` so tests can call it)."""
    sys.exit(run(args, root))
