"""HTTP latency and throughput of every ``anime-recs serve`` endpoint at full MyAnimeList scale, on 127.0.0.1.

By default the server serves **the default family fitted at full scale** by
``python bench/scale.py --stages fit`` (``--model``, default ``<scale data>/work/default_model``)
with the clean ratings it was fitted on and the anime table, the way ``anime-recs serve`` opens
a model (:meth:`anime_recs.serve.service.Service.from_files`, arrays memory-mapped), with
``--workers`` processes as ``anime-recs serve --workers`` (default: one per core).
``--synthetic`` serves the synthetic world of ``bench/query.py`` instead (the original
architecture with random 128-dim embeddings over 325k users x 17.5k anime, ~5M ratings; one worker).

Two phases:

- latency: each endpoint in turn, ``--requests`` requests from ``--clients`` keep-alive clients (HTTP/1.1 over
  raw sockets on one event loop, so the clients take little of the CPU they measure):
  p50/p99 latency, requests/s and errors (any non-200) per endpoint;
- load: ``--load-requests`` requests mixed over every endpoint from ``--load-clients`` keep-alive
  clients, against the same server, then against a server of one worker: requests/s and p99 of each.

The last line is machine-readable:
``p50_ms_max=<x> p99_ms_max=<y> errors=<n> ann_recall10_min=<r> model=<family> workers=<N> rps=<N workers>
p99_load_ms=<N workers> rps_1=<1 worker> p99_load_ms_1=<1 worker> rps_ratio=<N workers / 1 worker>``
(``ann_recall10_min``: recall@10 of the similar-users index measured at load, ``nan`` under 50k users).

Run from the repository root: ``.venv/bin/python bench/serve.py`` (a few minutes; each worker of the fitted
default needs ~6 GB); ``--synthetic --users 20000 --ratings 300000`` for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.parse
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


def _world_of_files(args: argparse.Namespace) -> dict:
    """Family and a sample of the user and anime ids of the fitted model at ``args.model`` (read from its files)."""
    folder = Path(args.model)
    rng = np.random.default_rng(args.seed + 2)
    users, anime = np.load(folder / "user_ids.npy"), np.load(folder / "anime_ids.npy")
    return {"family": json.loads((folder / "model.json").read_text())["family"], "users": len(users), "anime": len(anime),
            "user_ids": rng.choice(users, args.requests).tolist(), "anime_ids": rng.choice(anime, args.requests).tolist()}


def run_server(args: argparse.Namespace) -> None:
    """Open the served model and serve it on 127.0.0.1:``args.serve`` with ``args.workers`` processes until killed.

    The fitted model is served as ``anime-recs serve --workers N`` serves one (each worker loads it, memory-mapped);
    the synthetic world exists only in this process, so it is served by one.
    """
    import uvicorn
    from threadpoolctl import threadpool_limits

    from anime_recs.serve.app import SERVE_ENV, create_app
    from anime_recs.serve.workers import serve_workers
    from anime_recs.serve.holder import ModelHolder

    threadpool_limits(1, user_api="blas")  # memory-bound products; idle BLAS threads spin on shared cores
    if args.synthetic or args.workers == 1:
        service = _synthetic_service(args) if args.synthetic else _fitted_service(args)
        app = create_app(ModelHolder(loader=lambda root, ref: service, pinned="bench"))
        uvicorn.run(app, host="127.0.0.1", port=args.serve, log_level="warning")
        return
    os.environ.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})  # for the workers
    serve_workers({"files": {
        "model": str(args.model), "ratings": str(Path(args.model).parent / "preprocessed_stats.parquet"),
        "anime": str(DEFAULT_OUT.parent / "all_anime.csv"), "synopses": None, "version": f"bench:{Path(args.model).name}"}},
        SERVE_ENV, "127.0.0.1", args.serve, args.workers)


def _encoded(host: str, method: str, url: str, kwargs: dict) -> bytes:
    """One prepared request as the bytes an HTTP/1.1 keep-alive client sends (built before any timing)."""
    query = urllib.parse.urlencode(kwargs.get("params") or {})
    target = f"{url}?{query}" if query else url
    body = json.dumps(kwargs["json"]).encode() if "json" in kwargs else b""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """Send one request on a kept-alive connection; its status and body (Content-Length or chunked)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return status, body
    return status, await reader.readexactly(int(headers.get("content-length", 0)))


def _load(base: str, requests: list, clients: int) -> tuple[np.ndarray, int, float]:
    """Send the prepared ``(method, url, kwargs)`` requests from ``clients`` keep-alive connections; latencies (ms),
    errors (any non-200), wall seconds.

    The clients are coroutines on one event loop speaking HTTP/1.1 over raw sockets (~0.1 ms of CPU a request),
    not a thread each with an HTTP library: on this 2-core machine the clients must not take the cores the
    server is measured on (50 httpx threads took about half a core).
    """
    host, port = urllib.parse.urlparse(base).hostname, urllib.parse.urlparse(base).port
    encoded = [_encoded(f"{host}:{port}", method, url, kwargs) for method, url, kwargs in requests]
    latencies = np.zeros(len(requests))
    errors = [0]
    next_index = [0]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index[0] < len(encoded):
                i = next_index[0]
                next_index[0] += 1
                started = time.perf_counter()
                status, body = await _exchange(reader, writer, encoded[i])
                latencies[i] = (time.perf_counter() - started) * 1000
                if status != 200:
                    errors[0] += 1
                    if errors[0] <= 3:
                        logger.warning("%s -> %d %s", encoded[i].split(b"\r\n")[0].decode(), status, body[:200])
        finally:
            writer.close()

    async def everyone() -> None:
        await asyncio.gather(*(client() for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(everyone())
    return latencies, errors[0], time.perf_counter() - started


class _Server:
    """This script as the benchmark server (a subprocess) on 127.0.0.1:``port`` with ``workers`` processes."""

    def __init__(self, argv: list[str], port: int, workers: int) -> None:
        import httpx

        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, __file__, *argv, "--serve", str(port), "--workers", str(workers)],
                                        start_new_session=True)
        started = time.perf_counter()
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"error: the benchmark server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        self.info = httpx.get(f"{self.base}/api/info", timeout=10).json()
        self.seconds = time.perf_counter() - started

    def stop(self) -> None:
        """Stop the server and all its workers."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


def _endpoints(args: argparse.Namespace, world: dict) -> list[tuple[str, list]]:
    """Per endpoint, ``args.requests`` prepared requests ``(method, url, kwargs)`` about users and anime the model has."""
    rng = np.random.default_rng(args.seed + 3)
    q = args.requests
    anime = _catalogue(args)[1] if args.synthetic else _anime_table()
    names_by_id = dict(zip(anime["MAL_ID"].tolist(), anime["Name"].tolist()))
    users, ids = world["user_ids"][:q], world["anime_ids"][:q]
    names = [names_by_id[i] for i in ids]
    lists = [[{"anime": int(a), "rating": float(r)} for a, r in zip(rng.choice(world["anime_ids"], 20, replace=False),
                                                                    rng.integers(1, 11, 20))] for _ in range(q)]
    genres = anime["Genres"].str.split(", ").explode().value_counts().index[:20].tolist()
    genre_sets = [",".join(rng.choice(genres, 3, replace=False)) for _ in range(q)]
    # the score bound only where the catalogue has scores (the full-scale synthetic one has none)
    filters = {"genres": ",".join(genres[:2]), **({"min_score": 6} if anime["Score"].notna().any() else {})}
    get = lambda url, **kwargs: ("GET", url, kwargs)
    return [
        ("search", [get("/api/search", params={"q": n.split()[0][:5]}) for n in names]),
        ("similar anime (name)", [get("/api/anime/similar", params={"anime": n}) for n in names]),
        ("similar anime (genres, types)",
         [get("/api/anime/similar", params={"anime": a, "genres": g, "types": "TV,Movie"}) for a, g in zip(ids, genre_sets)]),
        ("similar users", [get(f"/api/users/{u}/similar") for u in users]),
        ("recommendations", [get(f"/api/users/{u}/recommendations") for u in users]),
        ("recommendations (filters)", [get(f"/api/users/{u}/recommendations", params=filters) for u in users]),
        ("similar-user recommendations", [get(f"/api/users/{u}/similar-user-recommendations") for u in users]),
        ("preferences", [get(f"/api/users/{u}/preferences") for u in users]),
        ("new user (20 ratings)", [("POST", "/api/new-user/recommendations", {"json": {"ratings": r}}) for r in lists]),
    ]


def _latency_phase(server: _Server, endpoints: list, clients: int) -> tuple[list[dict], int]:
    """Each endpoint in turn: warm-up, then its requests from ``clients`` clients; one row per endpoint."""
    rows, total_errors = [], 0
    for label, requests in endpoints:
        _load(server.base, requests[: max(10, len(requests) // 10)], clients)  # warm-up
        latencies, errors, wall = _load(server.base, requests, clients)
        total_errors += errors
        rows.append({"endpoint": label, "p50_ms": float(np.percentile(latencies, 50)),
                     "p99_ms": float(np.percentile(latencies, 99)), "req_per_s": len(requests) / wall, "errors": errors})
        print(f"{label:32s} p50 {rows[-1]['p50_ms']:7.2f} ms  p99 {rows[-1]['p99_ms']:7.2f} ms  "
              f"{rows[-1]['req_per_s']:7.1f} req/s  errors {errors}", flush=True)
    return rows, total_errors


def _mixed_load(server: _Server, endpoints: list, args: argparse.Namespace) -> dict:
    """``args.load_requests`` requests mixed over every endpoint (shuffled), from ``args.load_clients`` clients."""
    mixed = [request for _, requests in endpoints for request in requests]
    order = np.random.default_rng(args.seed + 4).permutation(len(mixed))
    picked = [mixed[i] for i in np.resize(order, args.load_requests)]
    # Warm-up, the same for every server: each worker touches its memory-mapped pages and builds its lazy caches
    # (the first 3,000 requests on a fresh server ran ~15% slower than the next ones).
    _load(server.base, picked[: args.load_warmup], args.load_clients)
    cpu = time.process_time()
    latencies, errors, wall = _load(server.base, picked, args.load_clients)
    return {"rps": len(picked) / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)), "errors": errors,
            "client_cpu_share": (time.process_time() - cpu) / wall}  # of one core: the clients' own load


def main(argv: list[str] | None = None) -> int:
    """Start the server, measure every endpoint, then the mixed load with 1 and N workers; print the summary line."""
    from anime_recs.models.linalg import workers

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--users", type=int, default=325_000, help="users with embeddings (--synthetic)")
    parser.add_argument("--anime", type=int, default=17_500, help="anime with embeddings and metadata (--synthetic)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (--synthetic)")
    parser.add_argument("--ratings", type=int, default=5_000_000, help="approximate ratings rows (--synthetic)")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--clients", type=int, default=2, help="concurrent clients of the latency phase")
    parser.add_argument("--workers", type=int, default=workers(),
                        help="server processes, as anime-recs serve --workers (default: one per core; --synthetic: 1)")
    parser.add_argument("--load-requests", type=int, default=3000, help="requests of the mixed load phase (0: no load phase)")
    parser.add_argument("--load-warmup", type=int, default=2000, help="mixed requests sent to each server before its load phase")
    parser.add_argument("--load-clients", type=int, default=50, help="concurrent keep-alive clients of the load phase")
    parser.add_argument("--port", type=int, default=8765, help="port of the benchmark server on 127.0.0.1")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--exact", action="store_true", help="exact similar-users search (no HNSW index; --synthetic)")
    parser.add_argument("--model", default=str(SCALE_WORK / "default_model"),
                        help="the fitted model folder to serve (bench/scale.py --stages fit writes it; its clean ratings "
                             "preprocessed_stats.parquet beside it, the anime table all_anime.csv next to the CSV)")
    parser.add_argument("--synthetic", action="store_true",
                        help="serve the synthetic world (--users, --anime, --dim, --ratings; random embeddings) instead of --model")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # internal: be the server
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.serve is not None:
        run_server(args)
        return 0
    if not args.synthetic and not (Path(args.model) / "model.json").is_file():
        print(f"error: no fitted model in {args.model}; run python bench/scale.py --make, then "
              f"--stages convert,preprocess,fit (or give --model DIR, or --synthetic)", file=sys.stderr)
        return 2
    if args.synthetic:
        args.workers = 1
    own = list(argv if argv is not None else sys.argv[1:])
    if args.synthetic:
        _, anime, _, user_ids = _catalogue(args)
        rng = np.random.default_rng(args.seed + 2)
        world = {"user_ids": rng.choice(user_ids, args.requests).tolist(),
                 "anime_ids": rng.choice(anime["MAL_ID"].to_numpy(), args.requests).tolist()}
    else:
        world = _world_of_files(args)
    endpoints = _endpoints(args, world)

    server = _Server(own, args.port, args.workers)
    try:
        info = server.info
        recall = info.get("user_index", {}).get("recall_at_10")
        print(f"server ready in {server.seconds:.0f} s: {info['family']}, {info['users']:,} users x {info['anime']:,} anime, "
              f"{args.workers} worker(s); {args.requests} requests per endpoint from {args.clients} clients", flush=True)
        rows, total_errors = _latency_phase(server, endpoints, args.clients)
        load = {args.workers: _mixed_load(server, endpoints, args)} if args.load_requests else {}
    finally:
        server.stop()
    if args.load_requests and args.workers > 1:
        single = _Server(own, args.port, 1)
        try:
            load[1] = _mixed_load(single, endpoints, args)
        finally:
            single.stop()
    for workers, result in sorted(load.items()):
        print(f"mixed load, {args.load_clients} clients, {workers} worker(s): {result['rps']:.1f} requests/s, "
              f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, errors {result['errors']} (clients' CPU: {result['client_cpu_share']:.0%} of a core)",
              flush=True)
        total_errors += result["errors"]
    print(json.dumps({"endpoints": rows, "load": {str(k): v for k, v in load.items()}}))
    summary = (f"p50_ms_max={max(r['p50_ms'] for r in rows):.2f} p99_ms_max={max(r['p99_ms'] for r in rows):.2f} "
               f"errors={total_errors} ann_recall10_min={'nan' if recall is None else f'{recall:.4f}'} model={info['family']}")
    if load:
        most = load[max(load)]
        summary += (f" workers={max(load)} rps={most['rps']:.1f} p99_load_ms={most['p99_ms']:.1f} rps_1={load[1]['rps']:.1f} "
                    f"p99_load_ms_1={load[1]['p99_ms']:.1f} rps_ratio={most['rps'] / load[1]['rps']:.2f}")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
