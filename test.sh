#!/usr/bin/env bash
# Command 2: install (first time) and run the test suite. Arguments go to pytest.
# Test files run in parallel (one pytest-xdist worker per core, at most 4; a file's tests stay
# together so its module fixtures are built once); `./test.sh -n 0` runs them one by one.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
python -m pytest -q -n auto --maxprocesses 4 --dist loadfile "$@"
