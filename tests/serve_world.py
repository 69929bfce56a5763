"""A small published world for the serving tests: named anime in three taste clusters, a fitted model, an artifact store.

36 anime (12 action, 12 romance, 12 horror, with real-sounding names so the page's
screenshots read naturally) and 90 users who each rate 7 anime of their own cluster
7-10 and 2 of another 1-3. :func:`publish_world` fits a model on it and publishes the
four artifacts :func:`anime_recs.serve.service.load_service` reads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.models import Interactions, build_model

NAMES = {
    "Action": ["Cowboy Bebop", "Trigun", "Samurai Champloo", "Fullmetal Alchemist", "Attack on Titan", "One Punch Man",
               "Mob Psycho 100", "Black Lagoon", "Gurren Lagann", "Akira", "Baccano", "Psycho-Pass"],
    "Romance": ["Toradora", "Clannad", "Kimi ni Todoke", "Your Lie in April", "Ouran High School Host Club", "Fruits Basket",
                "Nana", "Honey and Clover", "Kaguya-sama", "Horimiya", "Golden Time", "Maison Ikkoku"],
    "Horror": ["Another", "Higurashi", "Shiki", "Parasyte", "Tokyo Ghoul", "Hellsing", "Devilman Crybaby", "Mononoke",
               "Junji Ito Collection", "Corpse Party", "Elfen Lied", "Ghost Hunt"],
}
FAST = {"hybrid": {"family": "hybrid", "ranking": {"embedding_size": 8}, "rating": {"factors": 4, "embedding_size": 8}},
        "ease": {"family": "ease", "embedding_size": 8}}
FIRST_USER = 1100


def world(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(ratings on 1-10, anime table, synopses)``."""
    rng = np.random.default_rng(seed)
    genres = list(NAMES)
    anime = pd.DataFrame([{"MAL_ID": 1 + 10 * i + g, "Name": name, "Genres": genre + (", Comedy" if i % 4 == 0 else ""),
                           "Type": "Movie" if i % 3 == 0 else "TV", "Score": round(6.0 + (i % 5) * 0.6, 2), "Episodes": 12,
                           "Members": 1000 * (20 - i), "Source": "Manga" if i % 2 else "Original"}
                          for g, genre in enumerate(genres) for i, name in enumerate(NAMES[genre])])
    cluster = anime["Genres"].str.split(",").str[0].map(genres.index).to_numpy()
    rows = []
    for k in range(90):
        uid, c = FIRST_USER + k, k % 3
        own = rng.choice(np.flatnonzero(cluster == c), 7, replace=False)
        other = rng.choice(np.flatnonzero(cluster != c), 2, replace=False)
        rows += [(uid, int(anime.MAL_ID[a]), int(rng.integers(7, 11))) for a in own]
        rows += [(uid, int(anime.MAL_ID[a]), int(rng.integers(1, 4))) for a in other]
    ratings = pd.DataFrame(rows, columns=["user_id", "anime_id", "rating"])
    synopses = pd.DataFrame({"MAL_ID": anime["MAL_ID"], "sypnopsis": [f"{n}: a {g.split(',')[0].lower()} story told in 12 episodes."
                                                                       for n, g in zip(anime["Name"], anime["Genres"])]})
    return ratings, anime, synopses


def publish_world(root: Path, family: str = "hybrid", seed: int = 0, source: str = "sample") -> str:
    """Fit ``family`` on :func:`world` and publish model + data into the store at ``root``; returns the model ref.

    The ratings record their lineage as the pipeline's do: preprocessed from a download of ``source``.
    """
    ratings, anime, synopses = world(seed)
    work = root.parent / f"world-{family}-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(FAST[family]).fit(Interactions.from_frame(ratings, (1.0, 10.0)))
    files = model.save(work / "bundle")
    ratings.to_parquet(work / "stats.parquet")
    anime.to_csv(work / "anime.csv", index=False)
    synopses.to_csv(work / "synopses.csv", index=False)
    store = ArtifactStore(root)
    raw = store.log("user_stats.parquet", "raw_data", {"user_stats.parquet": work / "stats.parquet"}, metadata={"source": source})
    stats = store.log("preprocessed_stats.parquet", "preprocessed_data", {"preprocessed_stats.parquet": work / "stats.parquet"},
                      metadata={"scaling": {"rating_min": 1.0, "rating_max": 10.0}, "input": {raw.name: raw.ref}})
    table = store.log("all_anime.csv", "raw_data", {"all_anime.csv": work / "anime.csv"})
    texts = store.log("synopses.csv", "raw_data", {"synopses.csv": work / "synopses.csv"})
    pinned = {part.name: part.ref for part in (stats, table, texts)}  # as the neural_network step records them
    return store.log("anime_nn_embeddings", "embeddings", files, metadata={"input": pinned}).ref


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(args: list[str], url: str, timeout: float = 90.0, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.Popen:
    """Start a server process (in ``cwd``) and wait until ``url`` answers 200 (raises with its output if it dies).

    ``env`` is added to this process's environment; a value of ``""`` for ``PYTHONPATH`` clears it.
    """
    import urllib.request

    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={key: value for key, value in environment.items() if value != ""})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)  # a refused connection costs microseconds; 0.3 s polls idled ~0.15 s per start
    stop_server(proc)
    raise RuntimeError(f"server did not answer {url} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate a server started by :func:`start_server` (this process only)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
