"""The HTTP API (anime_recs.serve.app) and the query commands (anime_recs.cli.query), against real processes on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from anime_recs.serve.service import load_service
from tests.serve_world import FIRST_USER, free_port, publish_world, start_server, stop_server, world

GENRE_OF = {row.MAL_ID: row.Genres.split(",")[0] for row in world()[1].itertuples()}
MAL_XML = (b'<?xml version="1.0"?><myanimelist><myinfo><user_name>me</user_name></myinfo>'
           b"<anime><series_animedb_id>3</series_animedb_id><my_score>10</my_score><my_status>Completed</my_status></anime>"
           b"<anime><series_animedb_id>13</series_animedb_id><my_score>9</my_score><my_status>Completed</my_status></anime>"
           b"<anime><series_animedb_id>23</series_animedb_id><my_score>0</my_score><my_status>Plan to Watch</my_status></anime>"
           b"</myanimelist>")


def serve_store(root: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server([sys.executable, "-m", "anime_recs.cli.main", "--root", str(root), "serve", "--port", str(port), *extra],
                        f"{base}/api/info")
    return proc, base


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("serve") / "artifacts"
    ref = publish_world(root)
    proc, base = serve_store(root)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield SimpleNamespace(root=root, ref=ref, client=client, base=base)
    finally:
        stop_server(proc)


def test_similar_anime_by_forgiving_name(served: SimpleNamespace) -> None:
    answer = served.client.get("/api/anime/similar", params={"anime": "cowboy  BEBOP", "n": 5}).json()
    assert answer["version"] == served.ref and answer["query"]["name"] == "Cowboy Bebop"
    assert len(answer["results"]) == 5
    assert sum(GENRE_OF[r["mal_id"]] == "Action" for r in answer["results"]) >= 4
    assert {"genres", "type", "score", "synopsis", "similarity"} <= set(answer["results"][0])


def test_search_suggests_names_for_a_misspelling(served: SimpleNamespace) -> None:
    names = [r["name"] for r in served.client.get("/api/search", params={"q": "toradra"}).json()["results"]]
    assert names and names[0] == "Toradora"


def test_known_user_endpoints(served: SimpleNamespace) -> None:
    user = FIRST_USER + 2  # a horror fan (cluster k % 3 == 2)
    recs = served.client.get(f"/api/users/{user}/recommendations", params={"n": 5}).json()["results"]
    assert sum(GENRE_OF[r["mal_id"]] == "Horror" for r in recs) >= 4
    votes = served.client.get(f"/api/users/{user}/similar-user-recommendations", params={"n": 3}).json()["results"]
    assert votes and votes[0]["explanation"].endswith("similar users")
    similar = served.client.get(f"/api/users/{user}/similar", params={"n": 5}).json()["results"]
    assert sum((r["user_id"] - FIRST_USER) % 3 == 2 for r in similar) >= 4
    prefs = served.client.get(f"/api/users/{user}/preferences").json()
    assert max(prefs["genres"], key=prefs["genres"].get) == "Horror"


def test_new_user_from_json_ratings_and_from_a_mal_export(served: SimpleNamespace) -> None:
    body = {"ratings": [{"anime": "Toradora", "rating": 10}, {"anime": 13, "rating": 9}, {"anime": "clannad", "rating": 9}], "n": 5}
    answer = served.client.post("/api/new-user/recommendations", json=body).json()
    assert answer["used"] == 3 and sum(GENRE_OF[r["mal_id"]] == "Romance" for r in answer["results"]) >= 4
    assert not {13, 23} & {r["mal_id"] for r in answer["results"]}  # listed anime are not recommended
    assert answer["results"][0]["explanation"].startswith("like ")
    upload = served.client.post("/api/new-user/mal-export", params={"n": 4}, files={"file": ("animelist.xml", MAL_XML)}).json()
    assert upload["used"] == 2 and len(upload["results"]) == 4
    assert not {3, 13, 23} & {r["mal_id"] for r in upload["results"]}  # "plan to watch" counts as listed


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "reason"), [
    ("get", "/api/users/42/recommendations", {}, 404, "unknown user id 42"),
    ("get", "/api/anime/similar", {"params": {"anime": "rental magicka"}}, 404, "no anime named"),
    ("get", "/api/anime/similar", {"params": {"anime": "99999999999999999999999"}}, 404, "unknown anime id"),
    ("get", f"/api/users/{FIRST_USER}/recommendations", {"params": {"genres": "va#mpire"}}, 422, "unknown genre 'va#mpire'"),
    ("get", f"/api/users/{FIRST_USER}/recommendations", {"params": {"types": "Cartoon"}}, 422, "unknown type"),
    ("get", f"/api/users/{FIRST_USER}/recommendations", {"params": {"n": 0}}, 422, "n: Input should be greater"),
    ("get", f"/api/users/{FIRST_USER}/recommendations", {"params": {"n": 10**9}}, 422, "n: Input should be less"),
    ("post", "/api/new-user/recommendations", {"json": {"ratings": []}}, 422, "the rating list is empty"),
    ("post", "/api/new-user/recommendations", {"json": {"ratings": [{"anime": 3}]}}, 422, "ratings.0.rating: Field required"),
    ("post", "/api/new-user/recommendations", {"json": {"ratings": [{"anime": 3, "rating": 11}]}}, 422, "from 1 to 10"),
    ("post", "/api/new-user/recommendations", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("post", "/api/new-user/mal-export", {"files": {"file": ("x.xml", b"<rss><item/></rss>")}}, 422, "not a MyAnimeList"),
    ("post", "/api/new-user/mal-export", {"files": {"file": ("x.xml", b"\x00garbage")}}, 422, "not valid XML"),
])
def test_bad_input_is_a_one_line_4xx(served: SimpleNamespace, method: str, url: str, kwargs: dict, status: int, reason: str) -> None:
    response = getattr(served.client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and reason in detail


def test_page_and_openapi_are_served(served: SimpleNamespace) -> None:
    assert 'id="search"' in served.client.get("/").text
    assert served.client.get("/static/app.js").status_code == 200
    paths = served.client.get("/openapi.json").json()["paths"]
    assert {"/api/anime/similar", "/api/new-user/recommendations", "/api/new-user/mal-export"} <= set(paths)
    assert served.client.get("/docs").status_code == 200


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "--root", str(root), *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture()
def cli(anime_recs_cli):  # type: ignore[no-untyped-def]
    """``anime-recs --root ROOT ...`` in this process; test_query_commands also runs two in a real subprocess."""
    return lambda root, *args: anime_recs_cli("--root", str(root), *args)


def test_query_commands(served: SimpleNamespace, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    similar = _cli(served.root, "similar", "cowboy bebop", "-n", "3", "--json")
    assert similar.returncode == 0, similar.stderr
    assert json.loads(similar.stdout)["query"]["name"] == "Cowboy Bebop"
    unknown = _cli(served.root, "recommend", "--user", "42")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "unknown user id 42" in unknown.stderr, unknown.stderr
    table = cli(served.root, "recommend", "--user", str(FIRST_USER), "-n", "4", "--model", "v0")
    assert table.returncode == 0 and "recommendations for user" in table.stdout and "predicted rating" in table.stdout and "match" in table.stdout
    users = cli(served.root, "users", "--user", str(FIRST_USER), "--json")
    assert len(json.loads(users.stdout)["results"]) == 10
    (tmp_path / "mine.csv").write_text("name,rating\nToradora,10\nClannad,9\n")
    mine = json.loads(cli(served.root, "recommend", "--ratings", str(tmp_path / "mine.csv"), "-n", "3", "--json").stdout)
    assert mine["used"] == 2 and all(GENRE_OF[r["mal_id"]] == "Romance" for r in mine["results"])
    (tmp_path / "animelist.xml").write_bytes(MAL_XML)
    mal = cli(served.root, "recommend", "--mal-export", str(tmp_path / "animelist.xml"), "-n", "3")
    assert mal.returncode == 0 and "from your 2 ratings" in mal.stdout


@pytest.mark.parametrize(("args", "reason"), [
    (["recommend", "--user", "42"], "unknown user id 42"),
    (["similar", "rental magicka"], "no anime named"),
    (["similar", "Toradora", "-n", "0"], "n must be an integer from 1"),
    (["recommend", "--user", str(FIRST_USER), "--genres", "va#mpire"], "unknown genre"),
    (["recommend", "--ratings", "/nonexistent.csv"], "cannot read /nonexistent.csv"),
    (["similar", "Toradora", "--model", "v99"], "v99"),
])
def test_query_commands_fail_in_one_line(served: SimpleNamespace, args: list[str], reason: str, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(served.root, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], result.stderr


def test_reload_swaps_versions_atomically(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    first = publish_world(root, "hybrid")
    proc, base = serve_store(root, "--reload-every", "0.2")
    url = f"/api/users/{FIRST_USER}/recommendations"
    answers: list[tuple[int, dict]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                response = client.get(url, params={"n": 8})
                answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        second = publish_world(root, "ease", seed=1)
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(300):
                if client.get("/api/info").json()["version"] == second:
                    break
                threading.Event().wait(0.1)
        threading.Event().wait(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        stop_server(proc)
    def key(answer: dict) -> list[tuple[int, float]]:
        return [(r["mal_id"], round(r["predicted_rating"], 9)) for r in answer["results"]]

    expected = {ref: key(load_service(root, ref).recommend(FIRST_USER, 8)) for ref in (first, second)}
    assert expected[first] != expected[second]  # otherwise a mixed answer could not be told apart
    assert all(status == 200 for status, _ in answers)
    assert {body["version"] for _, body in answers} == {first, second}
    for _, body in answers:  # every answer is exactly one version's answer
        assert key(body) == expected[body["version"]]


def test_a_model_answers_with_its_own_catalogue_after_newer_data(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    # Regression: the model was joined with the newest all_anime.csv / synopses.csv, so after newer data was
    # downloaded `anime-recs similar "cowboy bebop"` answered with another catalogue's titles, exit 0.
    import pandas as pd

    from anime_recs.store.artifacts import ArtifactStore

    root = tmp_path / "artifacts"
    publish_world(root)
    store = ArtifactStore(root)
    catalogue_a = pd.read_csv(store.get("all_anime.csv:v0").file())
    other = catalogue_a.assign(Name="Other " + catalogue_a["Name"], **{"English name": "Other"})
    other.to_csv(tmp_path / "b.csv", index=False)
    store.log("all_anime.csv", "raw_data", {"all_anime.csv": tmp_path / "b.csv"})  # newer data B: v1
    names_a = set(catalogue_a["Name"])

    answer = json.loads(cli(root, "similar", "cowboy bebop", "-n", "5", "--json").stdout)  # the newest model: v0
    assert answer["query"]["name"] == "Cowboy Bebop" and {r["name"] for r in answer["results"]} <= names_a
    assert load_service(root, "v0").rec.resolve_anime("Cowboy Bebop") == answer["query"]["mal_id"]
    proc, base = serve_store(root, "--model", "v0")
    try:
        served = httpx.get(f"{base}/api/anime/similar", params={"anime": "cowboy bebop", "n": 5}, timeout=30).json()
    finally:
        stop_server(proc)
    assert served["query"]["name"] == "Cowboy Bebop" and {r["name"] for r in served["results"]} <= names_a
    recommended = json.loads(cli(root, "recommend", "--user", str(FIRST_USER), "-n", "5", "--json").stdout)
    assert len(recommended["results"]) == 5 and {r["name"] for r in recommended["results"]} <= names_a

    shutil.rmtree(root / "all_anime.csv" / "v0")  # the model's own catalogue is gone: no fallback to v1
    gone = cli(root, "similar", "cowboy bebop")
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1 and "all_anime.csv:v0" in gone.stderr, gone.stderr


def test_a_model_that_records_no_catalogue_says_so_in_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from anime_recs.store.artifacts import ArtifactStore

    root = tmp_path / "artifacts"
    ref = publish_world(root)
    store = ArtifactStore(root)
    model = store.get(ref)
    store.log("anime_nn_embeddings", "embeddings", {name: model.path / name for name in model.files},
              metadata={"input": {"preprocessed_stats.parquet": "preprocessed_stats.parquet:v0"}})  # as older versions did
    old = cli(root, "similar", "cowboy bebop")
    assert old.returncode == 2 and old.stderr.count("\n") == 1 and "records no version of all_anime.csv" in old.stderr


def _snake_keys(value: object) -> list[str]:
    """Every key anywhere in a JSON value that is not snake_case (genre/source names are data, not keys)."""
    bad: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                bad.append(key)
            if key not in ("genres", "sources") or not isinstance(item, dict):
                bad += _snake_keys(item)
    elif isinstance(value, list):
        for item in value:
            bad += _snake_keys(item)
    return bad


def test_every_json_answer_is_snake_case_and_validates_against_the_documented_schema(served: SimpleNamespace, cli) -> None:  # type: ignore[no-untyped-def]
    from anime_recs.serve.schema import ANSWERS

    user = FIRST_USER + 1
    api = {
        "info": served.client.get("/api/info"),
        "search": served.client.get("/api/search", params={"q": "tora"}),
        "similar_anime": served.client.get("/api/anime/similar", params={"anime": "Toradora", "n": 3}),
        "similar_users": served.client.get(f"/api/users/{user}/similar", params={"n": 3}),
        "recommend": served.client.get(f"/api/users/{user}/recommendations", params={"n": 3}),
        "recommend_from_similar_users": served.client.get(f"/api/users/{user}/similar-user-recommendations"),
        "preferences": served.client.get(f"/api/users/{user}/preferences"),
        "new_user": served.client.post("/api/new-user/recommendations", json={"ratings": [{"anime": 13, "rating": 9}]}),
    }
    for kind, response in api.items():
        assert response.status_code == 200, (kind, response.text)
        assert _snake_keys(response.json()) == [], kind
        ANSWERS[kind].model_validate(response.json())  # extra keys are refused: the schema is the whole answer
    assert isinstance(api["similar_anime"].json()["results"][0]["genres"], list)
    assert isinstance(api["similar_users"].json()["results"][0]["favorite_names"], list)

    commands = {"similar_anime": ("similar", "Toradora"), "similar_users": ("users", "--user", str(user)),
                "recommend": ("recommend", "--user", str(user))}
    for kind, argv in commands.items():
        printed = json.loads(cli(served.root, *argv, "-n", "3", "--json").stdout)
        assert _snake_keys(printed) == [], kind
        ANSWERS[kind].model_validate(printed)
    documented = served.client.get("/openapi.json").json()["components"]["schemas"]
    assert {"AnimeResult", "SimilarAnimeAnswer", "NewUserAnswer"} <= set(documented)
