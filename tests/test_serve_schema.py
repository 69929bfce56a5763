"""A bounded schemathesis run against the live server's OpenAPI spec: no 500s, no answers outside the spec."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serve_world import free_port, publish_world, start_server, stop_server

#: Examples per operation: bounded so the run takes seconds.
EXAMPLES = 30


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import sys

    import schemathesis  # imported here, not at collection: ~3 s in every test process that never runs this file

    root = tmp_path_factory.mktemp("schema") / "artifacts"
    publish_world(root)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server([sys.executable, "-m", "anime_recs.cli.main", "--root", str(root), "serve", "--port", str(port)], f"{base}/api/info")
    try:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")
    finally:
        stop_server(proc)


def test_api_never_fails_with_500(api_schema: object) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    # Hypothesis driven per operation by hand: schemathesis' pytest plugin does not load under pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    calls: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def call(case: schemathesis.Case) -> None:
            calls.append(case.call_and_validate(checks=checks).status_code)

        call()
    assert len(calls) >= 5 * len(operations) and 500 not in calls
