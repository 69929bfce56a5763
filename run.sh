#!/usr/bin/env bash
# Command 1: install (first time) and run the whole pipeline on the embedded sample,
# offline, with no W&B account, no conda and no GPU. Extra arguments go to `mlflow run`,
# e.g.  ./run.sh -P hydra_options="main.execute_steps='download,preprocess'"
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
mlflow run . --env-manager local "$@"
echo
anime-recs artifacts list
echo
echo "Browse the runs with:  .venv/bin/mlflow ui --backend-store-uri sqlite:///$(pwd)/mlflow.db"
