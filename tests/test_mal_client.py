"""The MyAnimeList client against a local fake API: rate limit, retries, paging, errors, secrecy."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.data.mal.client import (
    MalAuthError,
    MalClient,
    MalForbidden,
    MalNotFound,
    MalRequestFailed,
    RateLimiter,
    RetryPolicy,
    client_id_from_env,
    parse_retry_after,
)
from anime_recs.data.mal.mapping import ANIME_FIELDS
from tests.mal_fake import FakeMal, api_root, serve

SECRET = "c1ient-1d-5ecret-7f3a"
FAST = RetryPolicy(max_retries=3, backoff=0.05)


def _node(i: int) -> dict:
    return {"id": i, "title": f"Anime {i}", "mean": 7.5, "media_type": "tv", "genres": [{"id": 1, "name": "Action"}]}


@pytest.fixture()
def fake() -> Iterator[FakeMal]:
    data = FakeMal(client_id=SECRET, anime={i: _node(i) for i in range(1, 11)}, seasons={(2024, "spring"): list(range(1, 8))},
                   ranking=[5, 3, 1, 2, 4, 6, 7, 8], page_cap=3,
                   users={"alice": [{"node": {"id": i, "title": f"Anime {i}"},
                                     "list_status": {"status": "completed", "score": i % 11, "num_episodes_watched": 12}}
                                    for i in range(1, 9)]},
                   private={"hidden"})
    with serve(data) as running:
        yield running


def client(fake: FakeMal, rate: float = 200.0, **kwargs) -> MalClient:
    return MalClient(SECRET, api_root(fake), rate=rate, timeout=5, retry=kwargs.pop("retry", FAST), **kwargs)


def test_rate_limit_is_respected_across_requests_and_retries(fake: FakeMal) -> None:
    fake.faults = {"/v2/anime/2": ["500"], "/v2/anime/4": ["429"]}
    fake.retry_after = "0"
    rate = 8.0
    c = client(fake, rate=rate)
    for i in range(1, 7):
        c.anime(i, "id,title")
    times = np.array([r.time for r in fake.log])
    gaps = np.diff(times)
    assert len(times) == 8  # six anime, two retries
    # The server clock and the client's limiter are both monotonic; allow 10 ms scheduling jitter.
    assert gaps.min() >= 1 / rate - 0.01, gaps
    assert (len(times) - 1) / (times[-1] - times[0]) <= rate * 1.05


def test_rate_limiter_spacing_without_a_server() -> None:
    limiter = RateLimiter(20.0)
    stamps = []
    for _ in range(6):
        limiter.wait()
        stamps.append(time.monotonic())
    assert np.diff(stamps).min() >= 0.05 - 0.005
    with pytest.raises(UserInputError, match="rate limit must be > 0"):
        RateLimiter(0)


def test_429_waits_for_retry_after(fake: FakeMal) -> None:
    fake.faults = {"/v2/anime/3": ["429"]}
    fake.retry_after = "1"
    node = client(fake).anime(3, ANIME_FIELDS)
    assert node["id"] == 3
    first, second = fake.requests_to("/v2/anime/3")
    assert first.status == 429 and second.status == 200
    assert second.time - first.time >= 0.95  # Retry-After: 1 beats the 0.05 s backoff


def test_500s_dropped_connection_and_bad_json_are_retried(fake: FakeMal) -> None:
    fake.faults = {"/v2/anime/1": ["500", "500"], "/v2/users/alice/animelist@3": ["drop"], "/v2/anime/season/2024/spring@6": ["badjson"]}
    c = client(fake)
    assert c.anime(1, "id")["id"] == 1
    assert len(fake.requests_to("/v2/anime/1")) == 3
    entries = c.animelist("alice")
    assert [e["node"]["id"] for e in entries] == list(range(1, 9))  # every page once, the dropped one re-read
    assert entries[0]["list_status"]["status"] == "completed"
    assert len([r for r in fake.requests_to("/v2/users/alice") if r.query.get("offset") == "3"]) == 2
    assert c.season_ids(2024, "spring") == list(range(1, 8))
    assert len(fake.requests_to("/v2/anime/season/2024/spring")) == 4  # 3 pages + 1 retry


def test_persistent_faults_end_in_a_clear_failure(fake: FakeMal) -> None:
    fake.faults = {"/v2/anime/6": ["500"] * 10, "/v2/anime/7": ["badjson"] * 10}
    c = client(fake)
    with pytest.raises(MalRequestFailed, match=r"/v2/anime/6: HTTP 500 after 4 attempts"):
        c.anime(6, "id")
    with pytest.raises(MalRequestFailed, match=r"/v2/anime/7: malformed JSON"):
        c.anime(7, "id")
    assert len(fake.requests_to("/v2/anime/6")) == 4


def test_private_unknown_and_bad_client_id(fake: FakeMal) -> None:
    c = client(fake)
    with pytest.raises(MalForbidden):
        c.animelist("hidden")
    with pytest.raises(MalNotFound):
        c.animelist("nobody")
    with pytest.raises(MalNotFound):
        c.anime(999, "id")
    assert len(fake.requests_to("/v2/users/hidden")) == 1  # 403/404 are not retried
    wrong = MalClient("wrong-id", api_root(fake), rate=100, retry=FAST)
    with pytest.raises(MalAuthError, match="rejected the client id") as info:
        wrong.anime(1, "id")
    assert "wrong-id" not in str(info.value)


def test_ranking_and_paging_follow_next(fake: FakeMal) -> None:
    assert client(fake).ranking_ids("all", 5) == [5, 3, 1, 2, 4]
    assert [r.query.get("offset", "0") for r in fake.requests_to("/v2/anime/ranking")] == ["0", "3"]
    assert fake.requests_to("/v2/anime/ranking")[0].query["ranking_type"] == "all"


def test_next_link_to_another_host_is_refused(fake: FakeMal) -> None:
    # The client id must never be sent anywhere but the API host.
    c = client(fake)
    with pytest.raises(MalRequestFailed, match="not the API host"):
        c.get_json("http://example.invalid/v2/anime/1")


def test_client_id_never_logged(fake: FakeMal, caplog: pytest.LogCaptureFixture) -> None:
    fake.faults = {"/v2/anime/1": ["500", "429"], "/v2/anime/2": ["drop"]}
    fake.retry_after = "0"
    caplog.set_level(logging.DEBUG)
    c = client(fake)
    c.anime(1, "id")
    c.anime(2, "id")
    with pytest.raises(MalNotFound):
        c.animelist("nobody")
    assert "retry 1/3" in caplog.text  # something was logged …
    assert SECRET not in caplog.text and SECRET not in repr(c.__dict__.get("base_url"))  # … but never the id


def test_missing_client_id_and_retry_after_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAL_CLIENT_ID", raising=False)
    with pytest.raises(UserInputError, match="MAL_CLIENT_ID is not set") as info:
        client_id_from_env()
    assert "\n" not in str(info.value)
    monkeypatch.setenv("MAL_CLIENT_ID", " abc ")
    assert client_id_from_env() == "abc"
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert RetryPolicy(backoff=2).delay(3, None) == 16 and RetryPolicy(backoff=2).delay(0, 30) == 30
