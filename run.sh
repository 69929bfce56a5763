#!/usr/bin/env bash
# Command 1: install (first time) and run the whole pipeline on the embedded sample,
# offline, with no W&B account, no conda and no GPU. Extra arguments go to `mlflow run`,
# e.g.  ./run.sh -P hydra_options="main.execute_steps='download,preprocess'"
# Everything the run writes (mlflow.db, mlruns/, artifacts/, W&B's offline runs) goes to runs/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
ROOT="$(pwd)"
mkdir -p runs
# MLflow keeps its store and the Default experiment's artifacts in the folder it runs from: runs/.
(cd runs && mlflow run "$ROOT" --env-manager local "$@")
echo
anime-recs artifacts list
echo
echo "Browse the runs with:  .venv/bin/mlflow ui --backend-store-uri sqlite:///$ROOT/runs/mlflow.db"
echo "Ask the model with:    .venv/bin/anime-recs similar \"haruma garden\""
