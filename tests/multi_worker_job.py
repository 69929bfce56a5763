"""One training process of tests/test_multi_worker.py: a worker of a 2-worker cluster, or the single-process reference.

Run as ``python -m tests.multi_worker_job OUT_DIR CHECKPOINT_DIR {worker,single}``; a worker reads its
``TF_CONFIG`` from the environment. Writes ``OUT_DIR/weights.npz`` (every weight array, in model order) and
``OUT_DIR/history.json`` (the per-epoch training loss).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from anime_recs.models.network.architecture import ModelParams, scaled_batch_and_lr, select_strategy
from anime_recs.data.synthetic import latent_factor_ratings
from anime_recs.models.network.training import train_model

N_USERS, N_ANIME, N_ROWS, N_VAL = 200, 80, 6_000, 1_000
WORKERS = 2
# Per-replica batch and learning rates; train_model scales them by the replica count.
PARAMS = ModelParams(embedding_size=8, batch_size=500, epochs=2, start_lr=1e-2, max_lr=1e-2, min_lr=1e-3,
                     rampup_epochs=0, exp_decay=0.7, training_path="keras", seed=5)


def main(out_dir: Path, checkpoint_dir: Path, mode: str) -> None:
    """Train the tiny model as a cluster worker or alone, and save its weights and loss curve."""
    rows = latent_factor_ratings(N_USERS, N_ANIME, N_ROWS, dim=3, noise=0.05, seed=11)
    train, val = rows.take(np.arange(N_VAL, N_ROWS)), rows.take(np.arange(N_VAL))
    if mode == "worker":
        strategy, params = select_strategy(False, multi_worker=True), PARAMS
    else:  # the same global batch and learning rates on one device
        strategy, params = None, scaled_batch_and_lr(PARAMS, WORKERS)
    result = train_model(train, val, N_USERS, N_ANIME, params, strategy=strategy, checkpoint_dir=checkpoint_dir,
                         verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "weights.npz", *result.model.get_weights())
    (out_dir / "history.json").write_text(json.dumps(result.history["loss"].tolist()))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
