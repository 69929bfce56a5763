"""Fetching raw files: http(s) URLs (streamed), ``file://`` URIs, local paths, and CSV→parquet.

Every fetch writes to a temporary name beside the destination and renames it
into place only when complete, so an interrupted download leaves no file that
looks finished.
"""

from __future__ import annotations

import logging
import shutil
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .data import STATS_COLUMNS
from .errors import UserInputError
from .io import atomic_write
from .mal.source import is_mal_source

logger = logging.getLogger(__name__)

SAMPLE = "sample"
MAL_API = "mal-api"
CHUNK = 1 << 20
# The original project's data, for `data=original` (see README).
ORIGINAL_URLS = {
    "stats_url": "https://github.com/Dyrutter/anime_recommendations/blob/main/data/user_stats.parquet?raw=True",
    "all_anime_url": "https://github.com/Dyrutter/anime_recommendations/blob/main/data/all_anime.csv?raw=True",
    "synopses_url": "https://github.com/Dyrutter/anime_recommendations/blob/main/data/synopses.csv?raw=True",
}


def source_kind(source: str) -> str:
    """``sample``, ``mal-api``, ``http`` or ``file`` for a configured source string."""
    text = str(source).strip()
    if text.lower() == SAMPLE:
        return SAMPLE
    if is_mal_source(text):  # a finished `anime-recs mal refresh` folder, read by the download step
        return MAL_API
    scheme = urllib.parse.urlparse(text).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("", "file") or len(scheme) == 1:  # len 1: a Windows drive letter
        return "file"
    raise UserInputError(f"unsupported source {text!r}: use an http(s):// URL, a file:// URI, a local path, mal-api:FOLDER or 'sample'")


def local_path_of(source: str) -> Path:
    """The filesystem path of a ``file://`` URI or plain path."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    return Path(source).expanduser()


def fetch(source: str, dest: Path, timeout: float = 60.0, progress: bool = True) -> Path:
    """Copy or download ``source`` to ``dest`` atomically; return ``dest``.

    Raises:
        UserInputError: missing file, unreachable URL, HTTP error, empty download.
    """
    kind = source_kind(source)
    if kind == SAMPLE:
        raise UserInputError("'sample' is generated, not fetched")

    def copy_into(tmp: Path) -> None:
        if kind == "file":
            path = local_path_of(source)
            if not path.is_file():
                raise UserInputError(f"source file {path} does not exist; fix the path in the config (data.*_url)")
            shutil.copyfile(path, tmp)
        else:
            _download(source, tmp, timeout, progress)
        if tmp.stat().st_size == 0:
            raise UserInputError(f"source {source} is empty; check it")

    atomic_write(dest, copy_into)
    return dest


def _download(url: str, target: Path, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``target`` with a progress bar."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "anime-recs/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            name = Path(urllib.parse.urlparse(url).path).name or url
            with open(target, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {name}", disable=not progress, file=sys.stderr
            ) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and target.stat().st_size != total:
                raise UserInputError(f"download of {url} stopped early ({target.stat().st_size} of {total} bytes); try again")
    except urllib.error.HTTPError as exc:
        raise UserInputError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the URL") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserInputError(f"cannot reach {url} ({reason}); check the URL and your network, or use a local file") from None


# Columns a ratings-only file (like rating_complete.csv, all completed and rated) lacks, and what they become.
RATINGS_ONLY_DEFAULTS = {"watching_status": 2, "watched_episodes": 0}


def csv_to_parquet(source: Path, dest: Path, columns: tuple[str, ...] = STATS_COLUMNS, block_size: int = 64 << 20) -> int:
    """Convert a (possibly huge) user-stats CSV to parquet in streamed chunks; return rows.

    The source is only read; the parquet is written to a temporary name and
    renamed into place when complete. A ratings-only file (``user_id, anime_id,
    rating``) gets ``watching_status`` 2 (completed) and ``watched_episodes`` 0
    (unknown), with a warning: do not use drop_unwatched/drop_half_watched on it.
    """
    if not source.is_file():
        raise UserInputError(f"local file {source} does not exist; fix data.local_fname")
    header = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
    filled = {c: v for c, v in RATINGS_ONLY_DEFAULTS.items() if c in columns and c not in header}
    missing = [c for c in columns if c not in header and c not in filled]
    if missing:
        raise UserInputError(f"user stats file {source} lacks column(s) {', '.join(missing)}; it has: {', '.join(header)}")
    if filled:
        logger.warning("%s has no %s: treating every row as completed (watching_status 2, watched_episodes 0 = unknown); "
                       "do not use drop_unwatched or drop_half_watched with it", source.name, " or ".join(filled))
    present = [c for c in columns if c not in filled]
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=block_size),
        convert_options=pacsv.ConvertOptions(include_columns=present, column_types={c: pa.int64() for c in present}),
    )
    schema = pa.schema([(c, pa.int64()) for c in columns])
    rows = 0

    def convert_into(tmp: Path) -> None:
        nonlocal rows
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            try:
                for batch in reader:
                    arrays = [batch.column(c) if c not in filled else pa.array([filled[c]] * batch.num_rows, pa.int64())
                              for c in columns]
                    writer.write_batch(pa.record_batch(arrays, schema=schema))
                    rows += batch.num_rows
                    logger.info("converted %s rows of %s", f"{rows:,}", source.name)
            except pa.ArrowInvalid as exc:
                raise UserInputError(f"user stats file {source} has a bad row ({str(exc).splitlines()[0]}); fix or truncate the file") from None

    atomic_write(dest, convert_into)
    return rows
