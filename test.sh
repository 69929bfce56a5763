#!/usr/bin/env bash
# Command 2: install (first time) and run the test suite. Arguments go to pytest.
# Test files run in parallel (one pytest-xdist worker per core, at most 4; a file's tests stay
# together so its module fixtures are built once; the longest files start first, see tests/durations.py);
# `./test.sh -n 0` runs them one by one.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
# One BLAS thread and one TensorFlow thread of each kind per process (Numba: tests/conftest.py): with one
# worker per core, more threads only spin against each other (a fifth of the suite's CPU time went there).
# Set them to override.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" TF_NUM_INTRAOP_THREADS="${TF_NUM_INTRAOP_THREADS:-1}" \
    TF_NUM_INTEROP_THREADS="${TF_NUM_INTEROP_THREADS:-1}"
# The architecture first (seconds): the layers and no-cycles contracts of pyproject.toml [tool.importlinter].
lint-imports --no-cache >/dev/null || { lint-imports --no-cache; exit 1; }
python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder "$@"
