"""A polite client for the MyAnimeList API v2 (read-only endpoints, client-id authentication).

The client id travels only in the ``X-MAL-CLIENT-ID`` header: it is never logged,
never part of a URL, an exception message or a file. Every request (retries
included) waits for the rate limiter; 429, 5xx, dropped connections, timeouts and
malformed JSON are retried with exponential backoff, honouring ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from anime_recs.core.errors import UserInputError
from anime_recs.core.parsing import as_id

logger = logging.getLogger(__name__)

CLIENT_ID_ENV = "MAL_CLIENT_ID"
BASE_URL_ENV = "MAL_API_BASE_URL"
DEFAULT_BASE_URL = "https://api.myanimelist.net/v2"
DEFAULT_RATE = 0.5  # requests per second: one every two seconds, well under what MyAnimeList tolerates
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Documented maxima of `limit` per endpoint.
SEASON_LIMIT = 500
RANKING_LIMIT = 500
ANIMELIST_LIMIT = 1000
SEASONS = ("winter", "spring", "summer", "fall")
RANKING_TYPES = ("all", "airing", "upcoming", "tv", "ova", "movie", "special", "bypopularity", "favorite")


class MalError(Exception):
    """A request that did not give data (see the subclasses)."""


class MalNotFound(MalError):
    """HTTP 404: no such anime or user."""


class MalForbidden(MalError):
    """HTTP 403: a private anime list (or a refusal by the service)."""


class MalRequestFailed(MalError):
    """A request that still failed after every retry, or cannot succeed (HTTP 400)."""


class MalAuthError(UserInputError):
    """HTTP 401: MyAnimeList rejected the client id."""


def client_id_from_env() -> str:
    """The client id from ``$MAL_CLIENT_ID``.

    Raises:
        UserInputError: the variable is unset or empty.
    """
    value = os.environ.get(CLIENT_ID_ENV, "").strip()
    if not value:
        raise UserInputError(
            f"{CLIENT_ID_ENV} is not set; create a client at https://myanimelist.net/apiconfig and "
            f"`export {CLIENT_ID_ENV}=<its Client ID>`"
        )
    return value


def base_url_from_env() -> str:
    """``$MAL_API_BASE_URL`` or the official ``https://api.myanimelist.net/v2``."""
    return os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL


class RateLimiter:
    """At most ``rate`` calls of :meth:`wait` per second, evenly spaced."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise UserInputError(f"rate limit must be > 0 requests per second, got {rate}; e.g. --rate 0.5")
        self.interval = 1.0 / rate
        self._next = 0.0

    def wait(self) -> None:
        """Sleep until the next request may start."""
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
            now = time.monotonic()
        self._next = now + self.interval


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failing request."""

    max_retries: int = 5
    backoff: float = 2.0  # seconds before the first retry; doubles each time
    max_backoff: float = 300.0
    max_retry_after: float = 3600.0  # longer waits asked by the server are refused as a failure

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        backoff = min(self.backoff * (2**attempt), self.max_backoff)
        return max(backoff, retry_after or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if (seconds := as_id(value)) is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the client id header must never follow one to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class MalClient:
    """Read-only access to the MyAnimeList API v2.

    Args:
        client_id: the application's Client ID (``X-MAL-CLIENT-ID``).
        base_url: API root, e.g. ``https://api.myanimelist.net/v2``.
        rate: requests per second (every request, retries included, waits for it).
        timeout: seconds per request.
        retry: retry policy for 429, 5xx, network errors and malformed JSON.
    """

    def __init__(self, client_id: str, base_url: str = DEFAULT_BASE_URL, rate: float = DEFAULT_RATE,
                 timeout: float = 30.0, retry: RetryPolicy | None = None) -> None:
        if not client_id:
            raise UserInputError(f"empty MyAnimeList client id; set {CLIENT_ID_ENV}")
        self._headers = {"X-MAL-CLIENT-ID": client_id, "Accept": "application/json", "User-Agent": "anime-recs/0.1"}
        self.base_url = base_url.rstrip("/")
        parsed = urllib.parse.urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserInputError(f"MyAnimeList API base URL {base_url!r} is not an http(s) URL; fix --base-url or {BASE_URL_ENV}")
        self._origin = (parsed.scheme, parsed.netloc)
        self.limiter = RateLimiter(rate)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.requests = 0

    # -- transport -------------------------------------------------------------------------

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """Absolute URL of an API path with query parameters."""
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return f"{self.base_url}/{path.lstrip('/')}" + (f"?{query}" if query else "")

    def get_json(self, url: str) -> dict[str, Any]:
        """GET ``url`` (on the API's host) and return its JSON object, retrying transient failures.

        Raises:
            MalNotFound: HTTP 404.
            MalForbidden: HTTP 403.
            MalAuthError: HTTP 401 (a bad client id ends the whole refresh).
            MalRequestFailed: still failing after the retries, HTTP 400, or a URL on another host.
        """
        parsed = urllib.parse.urlparse(url)
        if (parsed.scheme, parsed.netloc) != self._origin:
            raise MalRequestFailed(f"refusing to follow {parsed.scheme}://{parsed.netloc}{parsed.path}: not the API host")
        what = parsed.path
        for attempt in range(self.retry.max_retries + 1):
            retry_after = None
            self.limiter.wait()
            self.requests += 1
            try:
                request = urllib.request.Request(url, headers=self._headers)
                with self._opener.open(request, timeout=self.timeout) as response:
                    body = response.read()
                data = json.loads(body)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                return data
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
                if status == 404:
                    raise MalNotFound(f"{what}: HTTP 404") from None
                if status == 403:
                    raise MalForbidden(f"{what}: HTTP 403") from None
                if status == 401:
                    raise MalAuthError(f"MyAnimeList rejected the client id (HTTP 401); check {CLIENT_ID_ENV}") from None
                if status not in RETRY_STATUSES:
                    raise MalRequestFailed(f"{what}: HTTP {status}") from None
                retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                problem = f"HTTP {status}"
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
                problem = f"network error ({getattr(exc, 'reason', None) or type(exc).__name__})"
            except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError, not an object
                problem = f"malformed JSON ({str(exc).splitlines()[0][:80]})"
            if attempt == self.retry.max_retries:
                raise MalRequestFailed(f"{what}: {problem} after {attempt + 1} attempts")
            if retry_after is not None and retry_after > self.retry.max_retry_after:
                raise MalRequestFailed(f"{what}: {problem}, server asks to wait {retry_after:.0f} s")
            delay = self.retry.delay(attempt, retry_after)
            logger.warning("%s: %s; retry %d/%d in %.1f s", what, problem, attempt + 1, self.retry.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Yield the ``data`` list of every page, following ``paging.next``."""
        url: str | None = self.url(path, params)
        while url:
            page = self.get_json(url)
            data = page.get("data")
            if not isinstance(data, list):
                raise MalRequestFailed(f"{urllib.parse.urlparse(url).path}: response has no 'data' list")
            yield data
            url = (page.get("paging") or {}).get("next")

    # -- endpoints -------------------------------------------------------------------------

    def anime(self, anime_id: int, fields: str) -> dict[str, Any]:
        """``GET /anime/{anime_id}?fields=...``: one anime's details."""
        return self.get_json(self.url(f"anime/{int(anime_id)}", {"fields": fields}))

    def season_ids(self, year: int, season: str, nsfw: bool = True) -> list[int]:
        """``GET /anime/season/{year}/{season}``: ids of every anime of a season (all pages)."""
        params = {"limit": SEASON_LIMIT, "nsfw": str(nsfw).lower()}
        return [int(item["node"]["id"]) for page in self.pages(f"anime/season/{int(year)}/{season}", params) for item in page]

    def ranking_ids(self, ranking_type: str, top: int, nsfw: bool = True) -> list[int]:
        """``GET /anime/ranking?ranking_type=...``: ids of the ``top`` first anime."""
        ids: list[int] = []
        params = {"ranking_type": ranking_type, "limit": min(top, RANKING_LIMIT), "nsfw": str(nsfw).lower()}
        for page in self.pages("anime/ranking", params):
            ids.extend(int(item["node"]["id"]) for item in page)
            if len(ids) >= top:
                break
        return ids[:top]

    def animelist(self, user_name: str, nsfw: bool = True) -> list[dict[str, Any]]:
        """``GET /users/{user_name}/animelist?fields=list_status``: every entry (all pages).

        Raises:
            MalForbidden: the list is private.
            MalNotFound: no such user.
        """
        path = f"users/{urllib.parse.quote(user_name, safe='')}/animelist"
        params = {"fields": "list_status", "limit": ANIMELIST_LIMIT, "nsfw": str(nsfw).lower()}
        return [item for page in self.pages(path, params) for item in page]
