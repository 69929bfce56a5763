"""Property-based fuzz of the parsers of what people type and send (issue 24, item 7).

The HTTP endpoints are fuzzed by schemathesis against the live server (tests/test_serve_schema.py); here the
rating-list parsers, the id rule and the ``anime-recs`` query commands get arbitrary input: each either
answers or ends with one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anime_recs.core.errors import UserInputError
from anime_recs.core.parsing import as_int
from anime_recs.recommend.newuser import RatingList, ratings_from_csv, ratings_from_mal_xml
from tests.serve_world import publish_world

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(st.one_of(st.text(max_size=40), st.integers(), st.booleans(), st.none()))
def test_the_id_rule_never_raises(value: object) -> None:
    parsed = as_int(value)
    assert parsed is None or (isinstance(parsed, int) and -(2**63) <= parsed < 2**63)


def _parsed_or_one_line(parse: Callable[[Any], RatingList], data: Any) -> RatingList | None:
    """What ``parse`` makes of ``data``: a :class:`RatingList`, or None after a one-line :class:`UserInputError`."""
    try:
        parsed = parse(data)
    except UserInputError as exc:
        assert "\n" not in str(exc)
        return None
    assert isinstance(parsed, RatingList)
    return parsed


CSV_ROWS = st.lists(st.tuples(st.one_of(st.integers(-5, 10**21).map(str), st.text(max_size=30)),
                              st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=8))), max_size=20)


@FUZZ
@given(st.one_of(st.text(max_size=600), CSV_ROWS.map(lambda rows: "anime_id,rating\n" + "\n".join(f"{a},{r}" for a, r in rows))))
def test_a_rating_csv_parses_or_is_one_line(text: str) -> None:
    parsed = _parsed_or_one_line(ratings_from_csv, text)
    assert parsed is None or len(parsed.anime) == len(parsed.ratings)


XML_ENTRIES = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=8)), min_size=1, max_size=10)


@FUZZ
@given(st.one_of(st.binary(max_size=600), XML_ENTRIES.map(lambda entries: (
    "<myanimelist>" + "".join(f"<anime><series_animedb_id>{i}</series_animedb_id><my_score>{s}</my_score></anime>"
                              for i, s in entries) + "</myanimelist>").encode("utf-8", "surrogatepass"))))
def test_a_mal_export_parses_or_is_one_line(data: bytes) -> None:
    parsed = _parsed_or_one_line(ratings_from_mal_xml, data)
    assert parsed is None or all(isinstance(a, int) for a in parsed.anime)


@pytest.fixture(scope="module")
def world_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "artifacts"
    publish_world(root)
    return root


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(["similar", "users --user", "recommend --user", "recommend --ratings"]),
       value=st.text(min_size=1, max_size=250).filter(lambda v: not v.startswith("-")))
def test_the_query_commands_answer_or_end_in_one_line(command: str, value: str, world_store: Path, tmp_path: Path,
                                                      anime_recs_cli) -> None:  # type: ignore[no-untyped-def]
    if command.endswith("--ratings"):  # the value is the file's content
        path = tmp_path / "ratings.csv"
        path.write_text(value, encoding="utf-8", errors="surrogatepass")
        value = str(path)
    result = anime_recs_cli("--root", str(world_store), *command.split(), value)
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines()
        assert lines and "error:" in lines[-1]
        # our own errors are one line; argparse's (a non-integer --user) are its usage line and one error line
        assert len(lines) == 1 or lines[0].startswith("usage:")
