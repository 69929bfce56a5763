"""HTTP latency of every ``anime-recs serve`` endpoint at full MyAnimeList scale, under a bounded load on 127.0.0.1.

By default a server process loads **the default family fitted at full scale** by
``python bench/scale.py --stages fit`` (``--model``, default ``<scale data>/work/default_model``)
with the clean ratings it was fitted on and the anime table, the way ``anime-recs serve`` opens
a model version (:meth:`anime_recs.serve.service.Service.from_files`), and serves it with the
real app (:func:`anime_recs.serve.app.create_app`, uvicorn, one worker). ``--synthetic`` serves
the synthetic world of ``bench/query.py`` instead (the original architecture with random
128-dim embeddings over 325k users x 17.5k anime, ~5M ratings). This process then sends
``--requests`` requests per endpoint from ``--clients`` concurrent keep-alive clients and
reports p50/p99 latency, requests/s and errors (any non-200) per endpoint.

Similar-users search goes through the quantised shortlist the server builds for large user
sets (:mod:`anime_recs.serve.ann`); its recall@10 against exact search over 200 random
users is the last field (``nan`` with ``--exact`` or under 50k users).

The last line is machine-readable:
``p50_ms_max=<x> p99_ms_max=<y> errors=<n> ann_recall10_min=<r> model=<family>``.

Run from the repository root: ``.venv/bin/python bench/serve.py`` (a few minutes; the fitted
default needs ~8 GB RSS in the server); ``--synthetic --users 20000 --ratings 300000`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.query import SIGMOID_HEAD, _unit_rows, make_anime, make_ratings
from bench.scale import DEFAULT_OUT

SCALE_WORK = DEFAULT_OUT.parent / "work"

logger = logging.getLogger("bench.serve")


def _catalogue(args: argparse.Namespace) -> tuple[np.random.Generator, object, object, np.ndarray]:
    """The anime table, synopses and user ids (the same for the server and the clients, from the seed)."""
    rng = np.random.default_rng(args.seed)
    anime, synopses = make_anime(rng, args.anime)
    user_ids = np.sort(rng.choice(np.arange(args.users * 2), size=args.users, replace=False)).astype(np.int64)
    return rng, anime, synopses, user_ids


def _anime_table() -> object:
    """The anime table of the full-scale synthetic data (``bench/scale.py --make`` writes it)."""
    from anime_recs.data.files import load_anime

    return load_anime(DEFAULT_OUT.parent / "all_anime.csv")


def _fitted_service(args: argparse.Namespace) -> object:
    """The fitted model at ``args.model`` with its clean ratings and anime table, opened as ``anime-recs serve`` does."""
    from anime_recs.serve.service import Service

    return Service.from_files(Path(args.model), Path(args.model).parent / "preprocessed_stats.parquet",
                              DEFAULT_OUT.parent / "all_anime.csv", None, f"bench:{Path(args.model).name}")


def _synthetic_service(args: argparse.Namespace) -> object:
    """The synthetic full-scale world: the original architecture with random embeddings."""
    from anime_recs.core.encoding import IdEncoder
    from anime_recs.models.original import OriginalNetwork
    from anime_recs.serve.ann import IndexedRecommender
    from anime_recs.serve.service import Service

    rng, anime, synopses, user_ids = _catalogue(args)
    ratings = make_ratings(rng, anime, user_ids, args.ratings)
    users = IdEncoder(user_ids, "user")
    items = IdEncoder(anime["MAL_ID"].to_numpy(), "anime")
    model = OriginalNetwork.from_embeddings(_unit_rows(rng, args.users, args.dim), _unit_rows(rng, args.anime, args.dim),
                                            users, items, SIGMOID_HEAD, (1.0, 10.0))
    rec = IndexedRecommender(model=model, ratings=ratings, anime=anime, synopses=synopses)
    if not args.exact:  # as Service.from_files does: the index only when its measured recall@10 is high enough
        rec.attach_if_accurate(seed=args.seed + 1)
    return Service(rec, "bench:synthetic")


def run_server(args: argparse.Namespace) -> None:
    """Open the served model and serve it on 127.0.0.1:``args.serve`` until killed.

    Before serving, writes ``args.world_file``: the family, the ANN recall and a sample of user and anime ids
    for the clients (so they ask about users and anime the model has).
    """
    import uvicorn
    from threadpoolctl import threadpool_limits

    from anime_recs.serve.app import create_app
    from anime_recs.serve.holder import ModelHolder

    service = _synthetic_service(args) if args.synthetic else _fitted_service(args)
    rec = service.rec
    recall = getattr(rec, "user_index_recall", None)
    rng = np.random.default_rng(args.seed + 2)
    world = {"family": rec.model.family, "users": len(rec.model.users), "anime": len(rec.model.items),
             "recall": "nan" if recall is None else f"{recall:.4f}",
             "user_ids": rng.choice(rec.model.users.ids, args.requests).tolist(),
             "anime_ids": rng.choice(rec.model.items.ids, args.requests).tolist()}
    Path(args.world_file).write_text(json.dumps(world))
    threadpool_limits(1, user_api="blas")  # memory-bound products; idle BLAS threads spin on shared cores
    app = create_app(ModelHolder(loader=lambda root, ref: service, pinned="bench"))
    uvicorn.run(app, host="127.0.0.1", port=args.serve, log_level="warning")


def _load(base: str, method: str, make: list, clients: int) -> tuple[np.ndarray, int, float]:
    """Send the prepared requests from ``clients`` threads; latencies (ms), errors, wall seconds."""
    import httpx

    latencies = np.zeros(len(make))
    errors = [0]
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(make):
                    return
                url, kwargs = make[i]
                started = time.perf_counter()
                response = client.request(method, url, **kwargs)
                latencies[i] = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    with lock:
                        errors[0] += 1
                        if errors[0] <= 3:
                            logger.warning("%s %s -> %d %s", method, url, response.status_code, response.text[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Start the server, load every endpoint, print the table and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--users", type=int, default=325_000, help="users with embeddings")
    parser.add_argument("--anime", type=int, default=17_500, help="anime with embeddings and metadata")
    parser.add_argument("--dim", type=int, default=128, help="embedding size")
    parser.add_argument("--ratings", type=int, default=5_000_000, help="approximate ratings rows")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--clients", type=int, default=2, help="concurrent clients")
    parser.add_argument("--port", type=int, default=8765, help="port of the benchmark server on 127.0.0.1")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--exact", action="store_true", help="exact similar-users search (no HNSW index)")
    parser.add_argument("--model", default=str(SCALE_WORK / "default_model"),
                        help="the fitted model folder to serve (bench/scale.py --stages fit writes it; its clean ratings "
                             "preprocessed_stats.parquet beside it, the anime table all_anime.csv next to the CSV)")
    parser.add_argument("--synthetic", action="store_true",
                        help="serve the synthetic world (--users, --anime, --dim, --ratings; random embeddings) instead of --model")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # internal: be the server
    parser.add_argument("--world-file", default=None, help=argparse.SUPPRESS)  # internal: what the server serves
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.serve is not None:
        run_server(args)
        return 0
    if not args.synthetic and not (Path(args.model) / "model.json").is_file():
        print(f"error: no fitted model in {args.model}; run python bench/scale.py --make, then "
              f"--stages convert,preprocess,fit (or give --model DIR, or --synthetic)", file=sys.stderr)
        return 2

    import httpx

    rng = np.random.default_rng(args.seed + 3)
    base = f"http://127.0.0.1:{args.port}"
    world_file = Path(tempfile.mkdtemp(prefix="bench_serve_")) / "world.json"
    server = subprocess.Popen([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--serve", str(args.port),
                               "--world-file", str(world_file)])
    started = time.perf_counter()
    try:
        while True:
            if server.poll() is not None:
                print(f"error: the benchmark server exited with {server.returncode}", file=sys.stderr)
                return 1
            try:
                if httpx.get(f"{base}/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        world = json.loads(world_file.read_text())
        print(f"server ready in {time.perf_counter() - started:.0f} s: {world['family']}, {world['users']:,} users x "
              f"{world['anime']:,} anime; {args.requests} requests per endpoint from {args.clients} clients")
        q = args.requests
        anime = _catalogue(args)[1] if args.synthetic else _anime_table()
        names_by_id = dict(zip(anime["MAL_ID"].tolist(), anime["Name"].tolist()))
        users = world["user_ids"][:q]
        ids = world["anime_ids"][:q]
        names = [names_by_id[i] for i in ids]
        lists = [[{"anime": int(a), "rating": float(r)} for a, r in zip(rng.choice(world["anime_ids"], 20, replace=False),
                                                                        rng.integers(1, 11, 20))] for _ in range(q)]
        genres = anime["Genres"].str.split(", ").explode().value_counts().index[:20].tolist()
        genre_sets = [",".join(rng.choice(genres, 3, replace=False)) for _ in range(q)]
        # the score bound only where the catalogue has scores (the full-scale synthetic one has none)
        filters = {"genres": ",".join(genres[:2]), **({"min_score": 6} if anime["Score"].notna().any() else {})}
        endpoints = [
            ("GET", "search", [("/api/search", {"params": {"q": n.split()[0][:5]}}) for n in names]),
            ("GET", "similar anime (name)", [("/api/anime/similar", {"params": {"anime": n}}) for n in names]),
            ("GET", "similar anime (genres, types)",
             [("/api/anime/similar", {"params": {"anime": a, "genres": g, "types": "TV,Movie"}}) for a, g in zip(ids, genre_sets)]),
            ("GET", "similar users", [(f"/api/users/{u}/similar", {}) for u in users]),
            ("GET", "recommendations", [(f"/api/users/{u}/recommendations", {}) for u in users]),
            ("GET", "recommendations (filters)", [(f"/api/users/{u}/recommendations",
                                                   {"params": filters}) for u in users]),
            ("GET", "similar-user recommendations", [(f"/api/users/{u}/similar-user-recommendations", {}) for u in users]),
            ("GET", "preferences", [(f"/api/users/{u}/preferences", {}) for u in users]),
            ("POST", "new user (20 ratings)", [("/api/new-user/recommendations", {"json": {"ratings": r}}) for r in lists]),
        ]
        rows, total_errors = [], 0
        for method, label, make in endpoints:
            _load(base, method, make[: max(10, q // 10)], args.clients)  # warm-up
            latencies, errors, wall = _load(base, method, make, args.clients)
            total_errors += errors
            rows.append({"endpoint": label, "p50_ms": float(np.percentile(latencies, 50)),
                         "p99_ms": float(np.percentile(latencies, 99)), "req_per_s": len(make) / wall, "errors": errors})
            print(f"{label:32s} p50 {rows[-1]['p50_ms']:7.2f} ms  p99 {rows[-1]['p99_ms']:7.2f} ms  "
                  f"{rows[-1]['req_per_s']:7.1f} req/s  errors {errors}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(rows))
    print(f"p50_ms_max={max(r['p50_ms'] for r in rows):.2f} p99_ms_max={max(r['p99_ms'] for r in rows):.2f} "
          f"errors={total_errors} ann_recall10_min={world['recall']} model={world['family']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
