"""``anime-recs mal refresh``: rebuild the raw files from the MyAnimeList API v2 (see :mod:`.refresh`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anime_recs.core.config import setup_logging, str_to_list
from anime_recs.core.errors import UserInputError
from anime_recs.core.io import print_table
from anime_recs.data.mal.checkpoint import read_user_names
from anime_recs.data.mal.client import (
    BASE_URL_ENV,
    CLIENT_ID_ENV,
    DEFAULT_RATE,
    RANKING_TYPES,
    SEASONS,
    MalClient,
    RetryPolicy,
    base_url_from_env,
    client_id_from_env,
)
from anime_recs.data.mal.refresh import MANIFEST, OUTPUT_FILES, PRIVATE, Refresh, RefreshOptions, anime_ids_from

logger = logging.getLogger(__name__)

#: Exit status of a refresh in which some requests failed and others did not.
PARTIAL_EXIT = 3

EPILOG = f"""\
The client id is read from ${CLIENT_ID_ENV} (create a client at https://myanimelist.net/apiconfig);
it is sent only in the X-MAL-CLIENT-ID header and never logged or written. The refresh is resumable:
rerun the same command after Ctrl-C or a crash and it continues. Publish the result with
  python main.py data.stats_url=mal-api:OUT data.all_anime_url=mal-api:OUT data.synopses_url=mal-api:OUT
Never publish OUT/{PRIVATE}/: it holds the user names and the name -> id map.

Exit status: 0 every request answered; {PARTIAL_EXIT} some failed (counted in the summary; the files hold the rest,
rerun to retry the failed ones); 1 every request failed (nothing fetched: check the network and --base-url);
2 bad input; 130 interrupted."""


def _ids(text: str) -> list[int]:
    try:
        return [int(item) for item in str_to_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated anime ids, got {text!r}") from None


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``mal`` command group to the ``anime-recs`` parser."""
    mal = commands.add_parser("mal", help="rebuild the raw data files from the MyAnimeList API v2",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    actions = mal.add_subparsers(dest="action", required=True)
    refresh = actions.add_parser(
        "refresh", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        help="fetch anime details and user lists into OUT/all_anime.csv, synopses.csv, user_stats.parquet",
        description="Fetch anime details (every id of the current data, every anime of the seasons since a year, "
                    "the top of a ranking) and the anime lists of named users, and write the pipeline's three raw files.")
    add = refresh.add_argument
    add("--out", type=Path, default=Path("mal_data"), help="refresh folder: raw files, refresh.json, private/ checkpoints (default: mal_data)")
    add("--anime-ids-from", default="", metavar="FILE_OR_ARTIFACT",
        help="refresh every MAL_ID of this all-anime table: a csv/parquet path or an artifact such as all_anime.csv:latest")
    add("--anime-ids", type=_ids, default=[], metavar="ID,ID,...", help="also these anime ids")
    add("--since-year", type=int, default=None, metavar="YEAR", help="also every anime of every season from winter YEAR (default: no seasons)")
    add("--until-year", type=int, default=None, metavar="YEAR", help="last season's year (default: the current season)")
    add("--until-season", choices=SEASONS, default=None, help="last season (with --until-year; default: fall, or the current season)")
    add("--ranking-top", type=int, default=0, metavar="N", help="also the first N anime of a ranking (default: 0, none)")
    add("--ranking-type", choices=RANKING_TYPES, default="all", help="which ranking --ranking-top reads (default: all)")
    add("--users", type=Path, default=None, metavar="FILE",
        help="text file of MyAnimeList user names, one per line (# comments); their lists become user_stats (default: none)")
    add("--list-anime", action=argparse.BooleanOptionalAction, default=True,
        help="also fetch anime that appear only in the users' lists (default: yes)")
    add("--nsfw", action=argparse.BooleanOptionalAction, default=True,
        help="include anime MyAnimeList marks not safe for work, as the 2020 files did (default: yes)")
    add("--rate", type=float, default=DEFAULT_RATE, metavar="REQ_PER_S",
        help=f"at most this many requests per second, retries included (default: {DEFAULT_RATE})")
    add("--timeout", type=float, default=30.0, metavar="SECONDS", help="timeout of each request (default: 30)")
    add("--max-retries", type=int, default=5, help="retries of a request after 429, 5xx, a dropped connection or bad JSON (default: 5)")
    add("--backoff", type=float, default=2.0, metavar="SECONDS",
        help="wait before the first retry, doubled each time; a longer Retry-After wins (default: 2)")
    add("--base-url", default=None, metavar="URL", help=f"API root (default: ${BASE_URL_ENV}, else https://api.myanimelist.net/v2)")
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars with ETA on stderr (default: yes)")
    add("--log-level", default=None, help="logging level (default: $ANIME_RECS_LOG_LEVEL, else INFO)")


def _until(args: argparse.Namespace) -> tuple[int, str] | None:
    if args.until_year is None:
        if args.until_season is not None:
            raise UserInputError("--until-season needs --until-year")
        return None
    return args.until_year, args.until_season or SEASONS[-1]


def run(args: argparse.Namespace, store_root: str | None) -> int:
    """Run ``anime-recs mal refresh``; return the exit status (130 when interrupted)."""
    setup_logging(args.log_level)
    client_id = client_id_from_env()  # first, so a missing id fails before anything is touched
    if args.ranking_top < 0 or args.max_retries < 0:
        raise UserInputError("--ranking-top and --max-retries must be >= 0")
    anime_ids = list(args.anime_ids)
    if args.anime_ids_from:
        anime_ids += anime_ids_from(args.anime_ids_from, store_root)
    names = read_user_names(args.users) if args.users else []
    options = RefreshOptions(out=args.out, anime_ids=tuple(anime_ids), since_year=args.since_year, until=_until(args),
                             ranking_type=args.ranking_type, ranking_top=args.ranking_top, user_names=tuple(names),
                             list_anime=args.list_anime, nsfw=args.nsfw, progress=args.progress)
    client = MalClient(client_id, args.base_url or base_url_from_env(), rate=args.rate, timeout=args.timeout,
                       retry=RetryPolicy(max_retries=args.max_retries, backoff=args.backoff))
    refresh = Refresh(client, options)
    try:
        manifest = refresh.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted after {client.requests} requests; everything fetched is kept in {args.out / PRIVATE}: "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    print_table(refresh.summary(), f"MyAnimeList refresh ({client.requests} requests)")
    failed = {c.phase: c.failed_keys for c in refresh.counts.values() if c.failed_keys}
    for phase, keys in failed.items():
        shown = ", ".join(map(str, keys[:20])) + (" …" if len(keys) > 20 else "")
        print(f"{phase}: {len(keys)} failed ({shown}); rerun the same command to retry them")
    n_failed = sum(c.failed for c in refresh.counts.values())
    n_answered = sum(c.resumed + c.fetched + c.private + c.not_found for c in refresh.counts.values())
    if n_failed and not n_answered:
        print(f"error: all {n_failed:,} requests to {client.base_url} failed, nothing was fetched; check the network "
              "and --base-url (or $MAL_API_BASE_URL), then rerun", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(args.out / f) for f in OUTPUT_FILES.values())}: {manifest['anime']:,} anime, "
          f"{manifest['users']:,} users, {manifest['user_stats_rows']:,} list rows; summary in {args.out / MANIFEST}")
    return PARTIAL_EXIT if n_failed else 0
