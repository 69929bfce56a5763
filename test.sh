#!/usr/bin/env bash
# Command 2: install (first time) and run the test suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
python -m pytest -q "$@"
