"""Fetching raw files: http(s) URLs (streamed), ``file://`` URIs, local paths, and CSV→parquet.

Every fetch writes to a temporary name beside the destination and renames it
into place only when complete, so an interrupted download leaves no file that
looks finished. A download has an overall deadline as well as a per-read timeout,
so a server that trickles bytes cannot hold a step forever. Errors name the
source as the user gave it, never the temporary copy.

HTTP downloads go through a cache keyed by URL (``$ANIME_RECS_DOWNLOAD_CACHE``, default
``~/.cache/anime_recs/downloads``): a finished file is kept with its sha256 and the
server's ``ETag`` / ``Last-Modified``; the next fetch of the same URL asks the server
(``If-None-Match`` / ``If-Modified-Since``) and, on ``304 Not Modified``, reuses the
cached file after checking its sha256. The destination is a hard link to the cache
entry, so the cached file and the artifact published from it share one copy on disk.
A connection that breaks mid-file is retried (``MAX_ATTEMPTS``, exponential back-off)
and resumed with a ``Range`` request when the server supports it; the partial file
also survives a killed step, so the next run resumes it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.csv as pacsv

from anime_recs.data.csv_errors import find_bad_line
from anime_recs.data.files import STATS_COLUMNS, check_text_table
from anime_recs.core.errors import UserInputError, cut, plain
from anime_recs.core.io import RowGroupWriter, atomic_write
from anime_recs.data.mal.source import is_mal_source

logger = logging.getLogger(__name__)

SAMPLE = "sample"
MAL_API = "mal-api"
CHUNK = 1 << 20
# Arrow's CSV reader reads ~40 blocks ahead of a slower consumer: 16 MB blocks keep a conversion under ~1 GB
# whatever the file's size (64 MB blocks: 2.7 GB on the 109M-row file).
CSV_BLOCK = 16 << 20
READ_TIMEOUT = 60.0  # seconds without a byte before a download is given up
DOWNLOAD_DEADLINE = 3600.0  # seconds a whole download may take (data.download_timeout)
CACHE_ENV = "ANIME_RECS_DOWNLOAD_CACHE"
MAX_ATTEMPTS = 4  # tries of one download whose connection breaks mid-file
BACKOFF = 0.5  # seconds before the first retry, doubled each time
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


def dataset_label(source: str) -> str:
    """A short name for the data set a ratings source gives: ``sample``, ``mal`` or the file's stem (``animelist``).

    The model registry keeps one registered model per label (see :mod:`anime_recs.pipeline.registry`).
    A local source may be recorded as ``local:PATH`` (the download step's ``--from_local``).
    """
    text = str(source).strip()
    text = text.removeprefix("local:")
    kind = source_kind(text)
    if kind in (SAMPLE, MAL_API):
        return "sample" if kind == SAMPLE else "mal"
    path = urllib.parse.urlparse(text).path if kind == "http" else str(local_path_of(text))
    stem = PurePosixPath(path.replace("\\", "/")).name.split(".")[0]
    label = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")[:40]
    return label or "unnamed"


def local_path_of(source: str) -> Path:
    """The filesystem path of a ``file://`` URI or plain path."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    return Path(source).expanduser()


def fetch(source: str, dest: Path, timeout: float = READ_TIMEOUT, progress: bool = True,
          deadline: float = DOWNLOAD_DEADLINE) -> Path:
    """Copy or download ``source`` to ``dest`` atomically; return ``dest``.

    Args:
        source: ``http(s)://`` URL, ``file://`` URI or local path.
        dest: where the file goes.
        timeout: seconds one read may wait for data.
        progress: show a progress bar for downloads.
        deadline: seconds the whole download may take.

    Raises:
        UserInputError: missing file, unreachable URL, HTTP error, an HTML page, deadline passed, empty download.
    """
    if deadline <= 0:
        raise UserInputError(f"the download deadline must be > 0 seconds, got {plain(deadline)}; set data.download_timeout")
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
            _download(source, tmp, min(timeout, deadline), progress, deadline)
        if tmp.stat().st_size == 0:
            raise UserInputError(f"source {source} is empty; check it")

    atomic_write(dest, copy_into)
    return dest


def download_cache() -> Path:
    """The download cache folder (``$ANIME_RECS_DOWNLOAD_CACHE`` or ``~/.cache/anime_recs/downloads``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "anime_recs" / "downloads").expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:  # another file system: a copy is the only way
        shutil.copyfile(source, dest)


def _download(url: str, target: Path, timeout: float, progress: bool, deadline: float = DOWNLOAD_DEADLINE) -> None:
    """Download ``url`` into ``target`` through the cache (see the module docstring)."""
    entry = download_cache() / hashlib.sha256(url.encode()).hexdigest()[:32]
    entry.mkdir(parents=True, exist_ok=True)
    data, meta_file, partial = entry / "data", entry / "meta.json", entry / "partial"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    validators = {}
    if data.is_file() and meta.get("url") == url and _sha256(data) == meta.get("sha256"):
        validators = {k: v for k, v in (("If-None-Match", meta.get("etag")), ("If-Modified-Since", meta.get("last_modified"))) if v}
    headers = _fetch_resuming(url, partial, timeout, progress, deadline, validators)
    if headers is None:  # 304: the cached file is the server's current one
        print(f"using the cached download of {url} (sha256 {meta['sha256'][:12]}…)", flush=True)
    else:
        meta = {"url": url, "sha256": _sha256(partial), "size": partial.stat().st_size,
                "etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
        os.replace(partial, data)
        meta_file.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    _link_or_copy(data, target)


def _fetch_resuming(url: str, partial: Path, timeout: float, progress: bool, deadline: float,
                    validators: dict[str, str]) -> http.client.HTTPMessage | None:
    """Stream ``url`` into ``partial``, resuming after broken connections; None when the server says 304.

    Returns:
        The final response's headers, or None for ``304 Not Modified``.
    """
    ends = time.monotonic() + deadline
    for attempt in range(MAX_ATTEMPTS):
        have = partial.stat().st_size if partial.is_file() else 0
        headers = {"User-Agent": "anime-recs/0.1", **validators, **({"Range": f"bytes={have}-"} if have else {})}
        try:
            return _stream(url, headers, partial, have, timeout, progress, deadline, ends)
        except _Broken as exc:
            if attempt == MAX_ATTEMPTS - 1 or time.monotonic() > ends:
                raise UserInputError(f"download of {url} stopped early ({exc}) {MAX_ATTEMPTS} times; "
                                     "try again later (the next run resumes it)") from None
            logger.info("download of %s broke (%s); resuming in %.1f s", url, exc, BACKOFF * 2**attempt)
            time.sleep(BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


class _Broken(Exception):
    """A connection that broke after the response started: worth retrying."""


def _stream(url: str, headers: dict[str, str], partial: Path, have: int, timeout: float, progress: bool, deadline: float,
            ends: float) -> http.client.HTTPMessage | None:
    """One request; appends to ``partial`` on ``206``, rewrites it on ``200``."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if "html" in (response.headers.get_content_type() or ""):
                raise UserInputError(f"{url} answered with an HTML page, not a data file; use the link to the raw file "
                                     "(e.g. GitHub's ?raw=True)")
            resumed = response.status == 206
            start = have if resumed else 0
            length = int(response.headers.get("Content-Length") or 0) or None
            total = start + length if length is not None else None
            name = Path(urllib.parse.urlparse(url).path).name or url
            with open(partial, "ab" if resumed else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=f"download {cut(name, 40)}", disable=not progress,
                file=sys.stderr
            ) as bar:
                try:
                    # read1 returns what has arrived, so the deadline is checked even while a server trickles bytes.
                    for chunk in iter(lambda: response.read1(CHUNK), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
                        if time.monotonic() > ends:
                            raise UserInputError(f"download of {url} did not finish within {deadline:g} s "
                                                 f"({out.tell():,} bytes so far); raise data.download_timeout or use a local copy")
                except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as exc:
                    raise _Broken(f"{out.tell():,} of {total or '?'} bytes: {type(exc).__name__}") from None
            size = partial.stat().st_size
            if total is not None and size != total:
                raise _Broken(f"{size} of {total} bytes")
            return response.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return None
        if exc.code == 416 and have:  # our partial file is longer than the file now served: start again
            partial.unlink(missing_ok=True)
            raise _Broken("the file changed on the server") from None
        raise UserInputError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the URL") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserInputError(f"cannot reach {url} ({reason}); check the URL and your network, or use a local file") from None


# Columns a ratings-only file (like rating_complete.csv, all completed and rated) lacks, and what they become.
RATINGS_ONLY_DEFAULTS = {"watching_status": 2, "watched_episodes": 0}


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", re.S)


def _csv_problem(exc: pa.ArrowInvalid, header: list[str]) -> str:
    """Arrow's CSV error as a column name, the bad value and what was expected."""
    first = str(exc).strip()
    match = _CONVERSION.search(first)
    if match:
        index = int(match.group(1))
        column = header[index] if index < len(header) else f"#{index}"
        return f"column {column} holds {plain(match.group(3))} where whole numbers are expected"
    return f"is not a valid CSV table ({plain(first.splitlines()[0] if first else type(exc).__name__, 100)})"


def csv_to_parquet(source: Path, dest: Path, columns: tuple[str, ...] = STATS_COLUMNS, block_size: int = CSV_BLOCK,
                   shown: str | None = None) -> int:
    """Convert a (possibly huge) user-stats CSV to parquet in streamed chunks; return rows.

    The source is only read; the parquet is written to a temporary name and
    renamed into place when complete. A ratings-only file (``user_id, anime_id,
    rating``) gets ``watching_status`` 2 (completed) and ``watched_episodes`` 0
    (unknown), with a warning: do not use drop_unwatched/drop_half_watched on it.

    Args:
        source: the CSV file.
        dest: the parquet file to write.
        columns: the columns to keep (all int64).
        block_size: bytes parsed at a time.
        shown: how the user named the file (URL or path), for messages; default ``source``.

    Raises:
        UserInputError: a file that is not a UTF-8 CSV table, missing columns, a value that is not a whole number, no rows.
    """
    shown = shown or str(source)
    if not source.is_file():
        raise UserInputError(f"local file {shown} does not exist; fix data.local_fname")
    check_text_table(source, "user stats", shown)
    header: list[str] = []
    present: list[str] = []
    rows = 0
    try:
        header = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
        filled = {c: v for c, v in RATINGS_ONLY_DEFAULTS.items() if c in columns and c not in header}
        missing = [c for c in columns if c not in header and c not in filled]
        if missing:
            has = cut(", ".join(header), 300)
            raise UserInputError(f"user stats file {shown} lacks column(s) {', '.join(missing)}; it has: {has}")
        if filled:
            logger.warning("%s has no %s: treating every row as completed (watching_status 2, watched_episodes 0 = unknown); "
                           "do not use drop_unwatched or drop_half_watched with it", shown, " or ".join(filled))
        present = [c for c in columns if c not in filled]
        schema = pa.schema([(c, pa.int64()) for c in columns])

        def convert_into(tmp: Path) -> None:
            nonlocal rows
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=block_size),
                convert_options=pacsv.ConvertOptions(include_columns=present, column_types={c: pa.int64() for c in present}),
            )
            with RowGroupWriter(tmp, schema=schema) as writer:
                for batch in reader:
                    arrays = [batch.column(c) if c not in filled else pa.array([filled[c]] * batch.num_rows, pa.int64())
                              for c in columns]
                    writer.write(pa.record_batch(arrays, schema=schema))
                    rows += batch.num_rows
                    logger.debug("converted %s rows of %s", f"{rows:,}", source.name)
            if rows == 0:
                raise UserInputError(f"user stats file {shown} has a header but no rows; check that it is the complete file")

        atomic_write(dest, convert_into)
    except pa.ArrowInvalid as exc:
        bad = find_bad_line(source, rows, header, present, 2 * block_size) if header else None
        if bad is None:
            raise UserInputError(f"user stats file {shown}: {_csv_problem(exc, header)}; fix or truncate the file") from None
        raise UserInputError(f"user stats file {shown}, line {bad.number:,} [{cut(bad.text)}]: {bad.problem}; "
                             "fix or delete that line") from None
    except UnicodeDecodeError as exc:
        raise UserInputError(f"user stats file {shown} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             "re-save it as UTF-8") from None
    return rows
