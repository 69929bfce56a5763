"""Longest files first: the order in which pytest-xdist hands test files to its workers.

``./test.sh`` runs with ``--dist loadfile --no-loadscope-reorder``: each file goes to one worker
whole, in collection order. By default that order is the most tests first, which left a few
long files with few tests (the browser page, the schemathesis run) for the end, one worker
running them while the other idled. Here files are sorted by their recorded time instead
(longest-processing-time first, so the last files to start are short ones).

The times are in ``tests/durations.json`` (seconds per test id, setup + call + teardown); a
test missing from it counts as the median. Refresh it after adding or changing slow tests with
``./test.sh --store-durations`` (the whole suite, so both lanes are covered).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true", default=False,
                     help=f"write each test's time (setup + call + teardown) to {DURATIONS.name}, for ordering later runs")


def _recorded() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):  # absent or damaged: fall back to the collection order
        return {}


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: a file weighs what will run of it
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    recorded = _recorded()
    if not recorded:
        return
    typical = statistics.median(recorded.values())
    per_file: dict[str, float] = defaultdict(float)
    for item in items:
        per_file[item.nodeid.split("::")[0]] += recorded.get(item.nodeid, typical)
    # A stable sort: tests keep their order inside a file (module fixtures are built once).
    items.sort(key=lambda item: -per_file[item.nodeid.split("::")[0]])


class _Recorder:
    """Sums the phases of each test as reports arrive (from the workers, under xdist)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        merged = {**_recorded(), **{k: round(v, 2) for k, v in self.seconds.items()}}
        partial = DURATIONS.with_suffix(".json.partial")
        partial.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")
        partial.replace(DURATIONS)  # a run stopped mid-write leaves the previous file, not half of one


def pytest_configure(config: pytest.Config) -> None:
    # Only the process that sees every report records: the controller under xdist, or the single process.
    if config.getoption("--store-durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(), "anime-recs-durations")
