#!/usr/bin/env bash
# Create (once) and update the project's virtualenv in .venv, then activate it.
# Sourced by run.sh and test.sh; safe to run again (pip skips what is installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "creating virtualenv $ROOT/.venv" >&2
  "$PYTHON" -m venv "$ROOT/.venv"
fi
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
STAMP="$ROOT/.venv/.installed-$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  echo "installing dependencies (first run: ~2 minutes, ~2.5 GB)" >&2
  python -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt" -e "$ROOT[test]" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  python -c "import anime_recs, mlflow, tensorflow" >/dev/null 2>&1 || { echo "error: installation failed; see pip's output above" >&2; exit 1; }
  rm -f "$ROOT"/.venv/.installed-* && touch "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
