"""Inputs that once made a 500, a traceback or unbounded work (issue 24, items 3 and 4), against a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.core.parsing import MAX_JSON_BYTES, MAX_NAME_CHARS, as_int
from anime_recs.recommend.loader import model_ref
from tests.conftest import REPO, child_env
from tests.serve_world import publish_world, stop_server
from tests.test_serve import serve_store


@pytest.mark.parametrize(("text", "value"), [(" 42 ", 42), ("-7", -7), ("+3", 3), ("²", None), ("٣", None), ("1e3", None),
                                             ("4.0", None), ("9" * 20, None), ("", None), (True, None), (5, None)])
def test_ids_are_ascii_integers_within_int64(text: object, value: int | None) -> None:
    assert as_int(text) == value


@pytest.mark.parametrize("reference", ["v-1", "a/b", "../../etc", "anime_nn_embeddings:v", "x:v1/../../y", "v²"])
def test_a_malformed_model_reference_says_what_form_is_expected(reference: str) -> None:
    with pytest.raises(UserInputError, match="is not one of: latest, N, vN .*NAME:vN or NAME:latest"):
        model_ref(reference)
    assert model_ref("3") == model_ref("v3") == "anime_nn_embeddings:v3"
    assert model_ref("anime_nn_embeddings:latest") == "anime_nn_embeddings:latest"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("hostile") / "artifacts"
    publish_world(root)
    proc, base = serve_store(root)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield SimpleNamespace(root=root, client=client, base=base)
    finally:
        stop_server(proc)


def _one_line_4xx(response: httpx.Response, status: int | tuple[int, ...]) -> str:
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


def test_a_unicode_digit_is_a_name_not_a_500(served: SimpleNamespace) -> None:
    _one_line_4xx(served.client.get("/api/anime/similar", params={"anime": "²"}), 404)
    answer = served.client.post("/api/new-user/recommendations", json={"ratings": [{"anime": "²", "rating": 8}]})
    assert answer.status_code in (404, 422), answer.text
    xml = b'<myanimelist><anime><series_animedb_id>\xc2\xb2</series_animedb_id><my_score>8</my_score></anime></myanimelist>'
    detail = _one_line_4xx(served.client.post("/api/new-user/mal-export", files={"file": ("list.xml", xml)}), 422)
    assert "expected a MAL_ID" in detail


def test_a_boolean_is_not_an_anime_id(served: SimpleNamespace) -> None:
    detail = _one_line_4xx(served.client.post("/api/new-user/recommendations",
                                              json={"ratings": [{"anime": True, "rating": 8}]}), 422)
    assert "ratings.0.anime" in detail


def test_names_and_bodies_have_limits(served: SimpleNamespace) -> None:
    long_name = "a" * (MAX_NAME_CHARS + 1)
    detail = _one_line_4xx(served.client.post("/api/new-user/recommendations",
                                              json={"ratings": [{"anime": long_name, "rating": 8}]}), 422)
    assert "ratings.0.anime" in detail
    _one_line_4xx(served.client.get("/api/anime/similar", params={"anime": long_name}), 422)
    huge = {"ratings": [{"anime": "x" * 100, "rating": 8}] * (MAX_JSON_BYTES // 100)}
    detail = _one_line_4xx(served.client.post("/api/new-user/recommendations", json=huge), 413)
    assert "larger than 4 MB" in detail
    # The same body without a Content-Length (chunked) is cut off as it arrives.
    chunks = (b"x" * (1 << 20) for _ in range(6))
    detail = _one_line_4xx(served.client.post("/api/new-user/recommendations", content=chunks,
                                              headers={"content-type": "application/json"}), 413)
    assert served.client.get("/api/info").status_code == 200


def test_a_5_mb_name_does_not_hold_the_server(served: SimpleNamespace) -> None:
    body = b'{"ratings": [{"anime": "' + b"b" * (5 << 20) + b'", "rating": 8}]}'
    host, port = served.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /api/new-user/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode())
        reply = raw.recv(4096).decode()  # answered before the body is sent
    assert reply.startswith("HTTP/1.1 413"), reply
    assert served.client.get("/api/info", timeout=2).status_code == 200


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "--root", str(root), *args], env=child_env(),
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_answers_hostile_input_in_one_line(served: SimpleNamespace, tmp_path: Path) -> None:
    similar = _cli("similar", "²", root=served.root)
    assert similar.returncode == 2 and similar.stderr.startswith("error: no anime named '²'"), similar.stderr
    endless = _cli("recommend", "--mal-export", "/dev/zero", root=served.root)
    assert endless.returncode == 2 and "larger than 20 MB" in endless.stderr and "Traceback" not in endless.stderr
    model = _cli("similar", "Cowboy Bebop", "--model", "../../etc", root=served.root)
    assert model.returncode == 2 and "is not one of: latest, N, vN" in model.stderr, model.stderr
    assert all(len(run.stderr.strip().splitlines()) == 1 for run in (similar, endless, model))


def _export(*entries: tuple[str, str]) -> bytes:
    body = "".join(f"<anime><series_animedb_id>{i}</series_animedb_id><my_score>{s}</my_score></anime>" for i, s in entries)
    return f'<?xml version="1.0"?><myanimelist>{body}</myanimelist>'.encode()


def test_an_anime_newer_than_the_data_is_skipped_not_fatal(served: SimpleNamespace) -> None:
    answer = served.client.post("/api/new-user/mal-export", files={"file": ("list.xml", _export(("3", "10"), ("13", "9"),
                                                                                               ("987654", "8")))})
    assert answer.status_code == 200, answer.text
    assert answer.json()["skipped"] == ["987654"] and answer.json()["used"] == 2
    pairs = served.client.post("/api/new-user/recommendations",
                               json={"ratings": [{"anime": 3, "rating": 10}, {"anime": 987654, "rating": 8}]})
    assert pairs.status_code == 200 and pairs.json()["skipped"] == ["987654"]


def test_every_way_in_rejects_the_same_bad_ratings_and_lists_them_all(served: SimpleNamespace) -> None:
    xml = served.client.post("/api/new-user/mal-export", files={"file": ("list.xml", _export(("3", "nan"), ("13", "-5"),
                                                                                            ("23", "0")))})
    detail = _one_line_4xx(xml, 422)
    assert detail.startswith("2 rating(s) are not numbers from 1 to 10 (3: not a number, 13: -5)"), detail
    as_json = served.client.post("/api/new-user/recommendations",
                                 json={"ratings": [{"anime": 3, "rating": 11}, {"anime": 13, "rating": -5}]})
    assert _one_line_4xx(as_json, 422).startswith("2 rating(s) are not numbers from 1 to 10 (3: 11, 13: -5)")


def test_the_same_anime_twice_counts_once_with_its_last_rating(served: SimpleNamespace) -> None:
    twice = served.client.post("/api/new-user/recommendations",
                               json={"ratings": [{"anime": 3, "rating": 9}, {"anime": 13, "rating": 8}, {"anime": 3, "rating": 1}]})
    once = served.client.post("/api/new-user/recommendations",
                              json={"ratings": [{"anime": 13, "rating": 8}, {"anime": 3, "rating": 1}]})
    assert twice.status_code == once.status_code == 200
    assert twice.json()["used"] == 2
    assert [r["mal_id"] for r in twice.json()["results"]] == [r["mal_id"] for r in once.json()["results"]]


def test_an_export_with_entities_is_refused_in_one_line(served: SimpleNamespace) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b"<myanimelist><anime><series_animedb_id>3</series_animedb_id><my_score>&b;</my_score></anime></myanimelist>")
    detail = _one_line_4xx(served.client.post("/api/new-user/mal-export", files={"file": ("list.xml", bomb)}), 422)
    assert "entities or external references" in detail


def test_every_misspelt_name_is_reported_at_once_with_suggestions(served: SimpleNamespace, tmp_path: Path) -> None:
    from tests.serve_world import world

    names = world()[1]["Name"].tolist()
    good, typo, reordered = names[0], names[1][:-1] + "q", " ".join(reversed(names[2].split()))
    ratings = [{"anime": good, "rating": 9}, {"anime": typo, "rating": 8}, {"anime": reordered, "rating": 7},
               {"anime": "zzqqxxyy", "rating": 5}]
    if reordered == names[2]:  # a one-word name: reordering changes nothing, misspell it instead
        ratings[2]["anime"] = reordered = names[2] + "x"
    detail = _one_line_4xx(served.client.post("/api/new-user/recommendations", json={"ratings": ratings}), 404)
    assert detail.startswith("no anime named ") and "3 name(s) not found" in detail, detail
    for missed, meant in ((typo, names[1]), (reordered, names[2])):
        assert f"{missed!r} (" in detail and f"{meant!r}" in detail.split(f"{missed!r} (")[1].split(")")[0] + ")", detail
    assert "'zzqqxxyy' (nothing close)" in detail
    csv = tmp_path / "mine.csv"
    csv.write_text("name,rating\n" + "\n".join(f"{r['anime']},{r['rating']}" for r in ratings) + "\n")
    cli = _cli("recommend", "--ratings", str(csv), root=served.root)
    assert cli.returncode == 2 and cli.stderr.strip().splitlines() == [f"error: {detail}"], cli.stderr
