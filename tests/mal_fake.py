"""A local stand-in for the MyAnimeList API v2 on 127.0.0.1, with fault injection.

It implements the documented read endpoints and JSON shapes: ``GET /v2/anime/{id}?fields=``,
``/v2/anime/season/{year}/{season}``, ``/v2/anime/ranking``, ``/v2/users/{name}/animelist``
(``{"data": [{"node": {...}, "list_status": {...}}], "paging": {"next": URL}}`` with
``limit``/``offset``), the ``X-MAL-CLIENT-ID`` header (401 without the right one) and
errors as ``{"error": ..., "message": ...}``. Pages are capped at ``page_cap`` items,
as the real service caps ``limit``, so paging is exercised with tiny data.

Faults are queued per request key (``"/v2/anime/5"`` or ``"/v2/users/x/animelist@2"`` for the
page at offset 2): ``"429"`` (with ``Retry-After``), ``"500"``, ``"drop"`` (the connection
closes mid-body), ``"badjson"``, ``"403"``, ``"404"``; each request consumes one.
"""

from __future__ import annotations

import http.server
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from anime_recs.data.files import UNKNOWN
from anime_recs.data.mal.mapping import LIST_STATUS, MEDIA_TYPES, RATINGS, SOURCES
from tests.conftest import serving

ALWAYS = ("id", "title", "main_picture")


@dataclass
class Request:
    """One request the server saw."""

    time: float
    path: str
    query: dict[str, str]
    status: int


@dataclass
class FakeMal:
    """The fake service's data, faults and request log."""

    client_id: str
    anime: dict[int, dict[str, Any]] = field(default_factory=dict)
    seasons: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    ranking: list[int] = field(default_factory=list)
    users: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)
    faults: dict[str, list[str]] = field(default_factory=dict)
    retry_after: str = "1"
    page_cap: int = 3
    delay: float = 0.0
    log: list[Request] = field(default_factory=list)
    base_url: str = ""

    def requests_to(self, prefix: str) -> list[Request]:
        """Requests whose path starts with ``prefix``."""
        return [r for r in self.log if r.path.startswith(prefix)]


def _page(fake: FakeMal, path: str, query: dict[str, str],
          items: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    limit = min(int(query.get("limit", 100)), fake.page_cap)
    offset = int(query.get("offset", 0))
    paging: dict[str, str] = {}
    if offset + limit < len(items):
        paging["next"] = f"{fake.base_url}{path}?" + urllib.parse.urlencode({**query, "offset": offset + limit})
    if offset > 0:
        paging["previous"] = f"{fake.base_url}{path}?" + urllib.parse.urlencode({**query, "offset": max(0, offset - limit)})
    return {"data": items[offset:offset + limit], "paging": paging, **(extra or {})}


def _route(fake: FakeMal, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    parts = path.strip("/").split("/")
    not_found = (404, {"error": "not_found", "message": ""})
    if parts[:2] != ["v2", "anime"] and parts[:2] != ["v2", "users"]:
        return not_found
    if parts[1] == "users" and len(parts) == 4 and parts[3] == "animelist":
        name = urllib.parse.unquote(parts[2])
        if name in fake.private:
            return 403, {"error": "forbidden", "message": ""}
        if name not in fake.users:
            return not_found
        with_status = "list_status" in query.get("fields", "")
        items = [{"node": {"id": e["node"]["id"], "title": e["node"]["title"]},
                  **({"list_status": e["list_status"]} if with_status else {})} for e in fake.users[name]]
        return 200, _page(fake, path, query, items)
    if parts[1] != "anime" or len(parts) < 3:
        return not_found
    brief = lambda i: {"node": {"id": i, "title": fake.anime[i]["title"]}}  # noqa: E731
    if parts[2] == "ranking":
        items = [{**brief(i), "ranking": {"rank": r}} for r, i in enumerate(fake.ranking, 1)]
        return 200, _page(fake, path, query, items)
    if parts[2] == "season" and len(parts) == 5:
        key = (int(parts[3]), parts[4])
        if key not in fake.seasons:
            return not_found
        items = [brief(i) for i in fake.seasons[key]]
        return 200, _page(fake, path, query, items, {"season": {"year": key[0], "season": key[1]}})
    if len(parts) == 3 and parts[2].isdigit() and int(parts[2]) in fake.anime:
        node = fake.anime[int(parts[2])]
        wanted = set(ALWAYS) | set(filter(None, query.get("fields", "").split(",")))
        return 200, {k: v for k, v in node.items() if k in wanted}
    return not_found


def _handler(fake: FakeMal) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, cut: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if cut:  # the connection drops half-way through the body
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if fake.delay:
                time.sleep(fake.delay)
            if self.headers.get("X-MAL-CLIENT-ID") != fake.client_id:
                status, payload = 401, {"error": "invalid_token", "message": "token is invalid"}
            else:
                status, payload = _route(fake, url.path, query)
            key = f"{url.path}@{query['offset']}" if "offset" in query and int(query["offset"]) else url.path
            queue = fake.faults.get(key)
            fault = queue.pop(0) if queue else None
            if fault in ("429", "500", "403", "404"):
                status, payload = int(fault), {"error": "fault", "message": fault}
            fake.log.append(Request(time.monotonic(), url.path, query, status))
            body = json.dumps(payload).encode()
            if fault == "badjson":
                self._send(200, body[: len(body) // 2] + b"<html>")
            elif fault == "drop":
                self._send(200, body, cut=True)
            else:
                self._send(status, body, {"Retry-After": fake.retry_after} if status == 429 else None)

    return Handler


@contextmanager
def serve(fake: FakeMal) -> Iterator[FakeMal]:
    """Run the fake API on 127.0.0.1 (a free port) while the block runs; ``fake.base_url`` is its ``/v2`` root."""
    with serving(_handler(fake)) as fake.base_url:
        yield fake


def api_root(fake: FakeMal) -> str:
    """The base URL a client should use."""
    return f"{fake.base_url}/v2"


# -- fixture data in the API's shapes ----------------------------------------------------------

def _inverse(mapping: dict[str, str]) -> dict[str, str]:
    inverse: dict[str, str] = {}
    for api, website in mapping.items():
        inverse.setdefault(website, api)
    return inverse


def node_from_row(row: pd.Series, synopsis: str = "", year: int = 2019, season: str = "spring") -> dict[str, Any]:
    """The API's anime details for one all-anime row (what the service would answer for it)."""
    episodes = pd.to_numeric(row["Episodes"], errors="coerce")
    score = pd.to_numeric(row["Score"], errors="coerce")
    return {
        "id": int(row["MAL_ID"]),
        "title": str(row["Name"]),
        "main_picture": {"medium": "https://cdn.myanimelist.net/images/anime/1/1.jpg", "large": "https://cdn.myanimelist.net/images/anime/1/1l.jpg"},
        "alternative_titles": {"synonyms": [], "en": "" if row["English name"] == UNKNOWN else str(row["English name"]),
                               "ja": str(row["Japanese name"])},
        "start_date": f"{year}-04-05", "end_date": f"{year}-06-21",
        "synopsis": f"{synopsis}\n\n[Written by MAL Rewrite]",
        "mean": None if pd.isna(score) else float(score),
        "rank": 10, "popularity": 20, "num_list_users": int(row["Members"]), "num_scoring_users": 100, "nsfw": "white",
        "media_type": _inverse(MEDIA_TYPES).get(str(row["Type"]), "unknown"),
        "status": "finished_airing",
        "genres": [{"id": i, "name": g} for i, g in enumerate(str(row["Genres"]).split(", "), 1)],
        "num_episodes": 0 if pd.isna(episodes) else int(episodes),
        "start_season": {"year": year, "season": season},
        "source": _inverse(SOURCES).get(str(row["Source"]), "other"),
        "average_episode_duration": 1440,
        "rating": _inverse(RATINGS).get(str(row["Rating"]), "pg_13"),
        "studios": [{"id": 1, "name": str(row["Studios"])}],
        "statistics": {"status": {"watching": "5", "completed": "50", "on_hold": "1", "dropped": "2", "plan_to_watch": "9"},
                       "num_list_users": int(row["Members"])},
    }


def entries_from_stats(stats: pd.DataFrame, titles: dict[int, str]) -> list[dict[str, Any]]:
    """One user's ``animelist`` entries (``node`` + ``list_status``) from user-stats rows."""
    names = {code: name for name, code in LIST_STATUS.items()}
    return [{"node": {"id": int(a), "title": titles.get(int(a), str(a))},
             "list_status": {"status": names[int(s)], "score": int(r), "num_episodes_watched": int(e), "is_rewatching": False,
                             "updated_at": "2024-01-01T00:00:00+00:00"}}
            for a, r, s, e in stats[["anime_id", "rating", "watching_status", "watched_episodes"]].itertuples(index=False)]


@dataclass
class World:
    """A fake service filled from the embedded sample, plus anime that are new since the "current" data."""

    fake: FakeMal
    names: list[str]  # user names, fan000 … (user k of the sample is fan{k:03d})
    sample: Any  # anime_recs.data.sample.SampleData: the "current" data
    new_ids: list[int]


def sample_world(client_id: str, n_users: int, n_anime: int, mean_items: int, seed: int = 7, n_new: int = 2,
                 new_fans_every: int = 2) -> World:
    """Serve the sample's anime and users through the fake API; add ``n_new`` anime of spring 2025.

    Every ``new_fans_every``-th user has completed the new anime with a 9, so they can be learned.
    """
    from anime_recs.data.sample import make_sample

    sample = make_sample(n_users, n_anime, mean_items, seed)
    synopses = dict(zip(sample.synopses["MAL_ID"], sample.synopses["sypnopsis"], strict=True))
    anime = {int(row["MAL_ID"]): node_from_row(row, synopses.get(row["MAL_ID"], "")) for _, row in sample.all_anime.iterrows()}
    first_new = int(sample.all_anime["MAL_ID"].max()) + 1000
    new_ids = list(range(first_new, first_new + n_new))
    for k, anime_id in enumerate(new_ids):
        row = sample.all_anime.iloc[k].copy()
        row["MAL_ID"], row["Name"], row["English name"] = anime_id, f"Fresh Anime {k + 1}", f"Fresh Anime {k + 1}"
        anime[anime_id] = node_from_row(row, f"A show from 2025, number {k + 1}.", year=2025, season="spring")
    titles = {i: node["title"] for i, node in anime.items()}
    users = {}
    for user_id, rows in sample.stats.groupby("user_id"):
        entries = entries_from_stats(rows, titles)
        if int(user_id) % new_fans_every == 0:
            entries += [{"node": {"id": i, "title": titles[i]},
                         "list_status": {"status": "completed", "score": 9, "num_episodes_watched": 12}} for i in new_ids]
        users[f"fan{int(user_id):03d}"] = entries
    fake = FakeMal(client_id=client_id, anime=anime, seasons={(2025, "winter"): [], (2025, "spring"): new_ids}, users=users,
                   ranking=sorted(anime)[:5])
    return World(fake, sorted(users), sample, new_ids)


def files_containing(root: Any, secret: str) -> list[str]:
    """Every file under ``root`` whose bytes contain ``secret``."""
    from pathlib import Path

    needle = secret.encode()
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]
