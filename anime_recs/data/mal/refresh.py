"""A resumable refresh of the three raw files from the MyAnimeList API v2.

A refresh folder (``--out``) looks like this::

    all_anime.csv  synopses.csv  user_stats.parquet   the pipeline's raw files (publishable)
    refresh.json                                      counts and options of the last finished refresh
    private/                                          never publish: checkpoints and the user-name map
        lists.jsonl  users.jsonl  anime.jsonl  user_ids.json

The refresh runs in three phases, each item checkpointed the moment it is fetched:

1. **lists**: the ids of every anime of each season since ``since_year``
   (``GET /anime/season/{year}/{season}``) and of the top of a ranking
   (``GET /anime/ranking``);
2. **users**: each named user's list (``GET /users/{name}/animelist``), all pages;
   private lists (403) and unknown users (404) are skipped and recorded;
3. **anime**: the details of every anime id from the current data, the lists and the
   users' lists (``GET /anime/{id}``).

Then the raw files are written from the checkpoints. A rerun of the same command
skips everything already recorded, so after ``kill -9`` or Ctrl-C it continues
where it stopped; items that failed after all retries are not recorded and are
fetched again.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from anime_recs.store.artifacts import ArtifactStore
from anime_recs.data.files import RAW_FILE_NAMES, load_anime
from anime_recs.core.errors import UserInputError
from anime_recs.core.io import write_csv, write_json, write_parquet
from anime_recs.data.mal.checkpoint import JsonlLog, UserIds, private_dir
from anime_recs.data.mal.client import SEASONS, MalClient, MalError, MalForbidden, MalNotFound, MalRequestFailed
from anime_recs.data.mal.mapping import ANIME_FIELDS, anime_frames, list_rows, stats_frame

logger = logging.getLogger(__name__)

OUTPUT_FILES = RAW_FILE_NAMES
MANIFEST = "refresh.json"
PRIVATE = "private"


@dataclass(frozen=True)
class RefreshOptions:
    """What to fetch and where to keep it.

    Attributes:
        out: the refresh folder (see the module docstring).
        anime_ids: anime to refresh whatever else is asked (e.g. every id of the current data).
        since_year: also every anime of every season from winter of this year; ``None``: no seasons.
        until: the last season, ``(year, season)``; ``None``: the current one.
        ranking_type: which ranking ``ranking_top`` reads (``all``, ``airing``, ``bypopularity``, …).
        ranking_top: also the first N anime of that ranking (0: none).
        user_names: users whose lists become ``user_stats`` (the API has no user directory).
        list_anime: also fetch the details of anime found only in the users' lists.
        nsfw: include anime MyAnimeList marks as not safe for work (the 2020 files did).
        progress: show progress bars.
    """

    out: Path
    anime_ids: tuple[int, ...] = ()
    since_year: int | None = None
    until: tuple[int, str] | None = None
    ranking_type: str = "all"
    ranking_top: int = 0
    user_names: tuple[str, ...] = ()
    list_anime: bool = True
    nsfw: bool = True
    progress: bool = True


@dataclass
class PhaseCount:
    """Items of one phase: asked for, already in the checkpoint, fetched now, skipped, failed."""

    phase: str
    asked: int = 0
    resumed: int = 0
    fetched: int = 0
    private: int = 0
    not_found: int = 0
    failed: int = 0
    failed_keys: list[Any] = field(default_factory=list)


def current_season(today: date | None = None) -> tuple[int, str]:
    """``(year, season)`` of a date (winter = January–March, as MyAnimeList)."""
    today = today or date.today()
    return today.year, SEASONS[(today.month - 1) // 3]


def seasons_between(since_year: int, until: tuple[int, str]) -> list[tuple[int, str]]:
    """Every ``(year, season)`` from winter ``since_year`` through ``until``."""
    last_year, last_season = until
    if last_season not in SEASONS:
        raise UserInputError(f"unknown season {last_season!r}; choose from: {', '.join(SEASONS)}")
    if since_year > last_year:
        raise UserInputError(f"--since-year {since_year} is after the last season {last_season} {last_year}")
    return [(y, s) for y in range(since_year, last_year + 1) for s in SEASONS
            if (y, SEASONS.index(s)) <= (last_year, SEASONS.index(last_season))]


def anime_ids_from(source: str, store_root: str | None = None) -> list[int]:
    """The ``MAL_ID`` values of an all-anime table: a csv/parquet path or an artifact ``NAME[:VERSION]``.

    Raises:
        UserInputError: neither an existing file nor a published artifact, or not an all-anime table.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        artifact = ArtifactStore(store_root).get(source)
        path = artifact.file()
    return load_anime(path)["MAL_ID"].astype(int).tolist()


class Refresh:
    """One refresh folder: its checkpoints, the phases that fill them, and the files built from them."""

    def __init__(self, client: MalClient, options: RefreshOptions) -> None:
        self.client = client
        self.options = options
        self.out = Path(options.out)
        private = private_dir(self.out / PRIVATE)
        self.lists = JsonlLog(private / "lists.jsonl", "key")
        self.users = JsonlLog(private / "users.jsonl", "user_id")
        self.anime = JsonlLog(private / "anime.jsonl", "id")
        self.user_ids = UserIds(private / "user_ids.json")
        self.counts: dict[str, PhaseCount] = {}

    # -- phases ----------------------------------------------------------------------------

    def _phase(self, name: str, keys: list[Any], log: JsonlLog, fetch: Callable[[Any], dict[str, Any]],
               skips: dict[type[MalError], str], label: Callable[[Any], str] = str) -> None:
        """Fetch every key not yet in ``log``; checkpoint results and the skips named in ``skips``."""
        from tqdm import tqdm

        count = self.counts[name] = PhaseCount(name, asked=len(keys))
        todo = [k for k in keys if k not in log]
        count.resumed = len(keys) - len(todo)
        if count.resumed:
            logger.info("%s: %d of %d already fetched (resuming)", name, count.resumed, len(keys))
        with tqdm(total=len(todo), desc=f"mal {name}", unit="item", disable=not self.options.progress, file=sys.stderr) as bar:
            for key in todo:
                try:
                    record = {log.key_field: key, "status": "ok", **fetch(key)}
                except UserInputError:
                    raise  # a rejected client id: nothing else will work either
                except (MalError, KeyError, TypeError, ValueError) as exc:  # the last three: an answer of an unexpected shape
                    status = next((s for kind, s in skips.items() if isinstance(exc, kind)), None)
                    if status is None:
                        count.failed += 1
                        count.failed_keys.append(key)
                        logger.warning("%s %s failed: %s", name, label(key), exc)
                    else:
                        setattr(count, status, getattr(count, status) + 1)
                        logger.info("%s %s skipped: %s", name, label(key), status.replace("_", " "))
                        log.append({log.key_field: key, "status": status})
                else:
                    count.fetched += 1
                    log.append(record)
                bar.update(1)
                bar.set_postfix(failed=count.failed, skipped=count.private + count.not_found, refresh=False)

    def _fetch_lists(self) -> None:
        o = self.options
        keys = []
        if o.since_year is not None:
            keys += [f"season/{y}/{s}" for y, s in seasons_between(o.since_year, o.until or current_season())]
        if o.ranking_top > 0:
            keys.append(f"ranking/{o.ranking_type}/{o.ranking_top}")

        def fetch(key: str) -> dict[str, Any]:
            kind, a, b = key.split("/")
            ids = self.client.season_ids(int(a), b, o.nsfw) if kind == "season" else self.client.ranking_ids(a, int(b), o.nsfw)
            return {"ids": ids}

        self._phase("lists", keys, self.lists, fetch, {MalNotFound: "not_found"})

    def _fetch_users(self) -> None:
        ids = self.user_ids.assign(list(self.options.user_names))
        names = {user_id: name for name, user_id in ids.items()}

        def fetch(user_id: int) -> dict[str, Any]:
            rows, unknown = list_rows(user_id, self.client.animelist(names[user_id], self.options.nsfw))
            if unknown:
                logger.warning("user %s: %d list entries with an unknown status left out", names[user_id], unknown)
            return {"rows": rows}

        self._phase("users", list(names), self.users, fetch, {MalForbidden: "private", MalNotFound: "not_found"},
                    label=lambda user_id: repr(names[user_id]))

    def _fetch_anime(self) -> None:
        wanted = dict.fromkeys(int(i) for i in self.options.anime_ids)
        for record in self.lists.records.values():
            wanted.update(dict.fromkeys(record.get("ids", ())))
        if self.options.list_anime:
            for record in self.users.records.values():
                wanted.update(dict.fromkeys(row[0] for row in record.get("rows", ())))
        def fetch(anime_id: int) -> dict[str, Any]:
            node = self.client.anime(anime_id, ANIME_FIELDS)
            if node.get("id") != anime_id:
                raise MalRequestFailed(f"/anime/{anime_id}: the answer is about anime {node.get('id')!r}")
            return {"node": node}

        self._phase("anime", sorted(wanted), self.anime, fetch, {MalNotFound: "not_found"})

    def run(self) -> dict[str, Any]:
        """Fetch what the checkpoints lack, then write the raw files; return the manifest."""
        self._fetch_lists()
        self._fetch_users()
        self._fetch_anime()
        return self.build()

    # -- outputs ---------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        """Write ``all_anime.csv``, ``synopses.csv``, ``user_stats.parquet`` and ``refresh.json`` from the checkpoints."""
        nodes = [r["node"] for r in self.anime.records.values() if r["status"] == "ok"]
        anime, synopses = anime_frames(nodes)
        users = {uid: r["rows"] for uid, r in self.users.records.items() if r["status"] == "ok"}
        wanted = set(self.user_ids.assign(list(self.options.user_names)).values())  # only the users asked for this time
        kept = sorted(uid for uid in users if uid in wanted)
        stats = stats_frame(kept, [users[uid] for uid in kept])
        write_csv(anime, self.out / OUTPUT_FILES["all_anime"])
        write_csv(synopses, self.out / OUTPUT_FILES["synopses"])
        write_parquet(stats, self.out / OUTPUT_FILES["stats"])
        failed = sum(c.failed for c in self.counts.values())
        manifest = {
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": failed == 0,
            "anime": len(anime),
            "users": len(kept),
            "user_stats_rows": len(stats),
            "options": {"since_year": self.options.since_year, "until": list(self.options.until or current_season()),
                        "ranking_type": self.options.ranking_type, "ranking_top": self.options.ranking_top,
                        "list_anime": self.options.list_anime, "nsfw": self.options.nsfw, "anime_ids_given": len(self.options.anime_ids)},
            # Counts only: user names stay in private/.
            "phases": {name: {k: v for k, v in asdict(c).items() if k not in ("phase", "failed_keys")} for name, c in self.counts.items()},
        }
        write_json(manifest, self.out / MANIFEST)
        return manifest

    def summary(self) -> pd.DataFrame:
        """One row per phase: asked, resumed, fetched, private, not_found, failed."""
        return pd.DataFrame([{k: v for k, v in asdict(c).items() if k != "failed_keys"} for c in self.counts.values()])
