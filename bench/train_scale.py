"""One training epoch streamed from a preprocessed parquet: seconds per epoch and peak RSS.

The ``train`` stage of the scale benchmark (issue 10): the same code path as the neural_network step
above ``model.stream_above_rows`` (:class:`anime_recs.data.streaming.ParquetRatings` → ``train_model``),
the original architecture (embedding 128, batch 10,000) on whatever users and anime the file holds.
Run it in a process of its own: peak RSS is the process's (``ru_maxrss``). ``bench/scale.py`` can
call :func:`train_epoch` in a subprocess or run this script and parse its last line::

    train_prep_s=<x> train_epoch_s=<y> train_rss_gb=<z> train_rows=<n>

``train_prep_s`` is the two passes before training (encoders from the id columns; validation rows
and training-row count). ``--make`` writes a synthetic file of the preprocessed-stats contract
(``user_id`` int64, ``anime_id`` int64, ``rating`` float32 in [0, 1], ``watching_status`` int8,
``watched_episodes`` int32) in 1M-row chunks and row groups, never whole in memory; its ratings
come from a fresh latent-factor draw per chunk, good for timing and memory, not for accuracy.

Examples (shared 2-core machine: absolute seconds are noise, compare within one run)::

    python bench/train_scale.py --make /tmp/scale/stats.parquet --rows 20000000 --users 325000 --anime 17500
    python bench/train_scale.py /tmp/scale/stats.parquet
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_CHUNK = 1_000_000


def make_parquet(path: Path, rows: int, users: int, anime: int, seed: int = 0) -> None:
    """Write a synthetic preprocessed-stats parquet of ``rows`` rows, chunk by chunk (atomic rename at the end)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anime_recs.data.synthetic import latent_factor_ratings

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    schema = pa.schema([("user_id", pa.int64()), ("anime_id", pa.int64()), ("rating", pa.float32()),
                        ("watching_status", pa.int8()), ("watched_episodes", pa.int32())])
    with pq.ParquetWriter(tmp, schema) as writer:
        for index, start in enumerate(range(0, rows, _CHUNK)):
            n = min(_CHUNK, rows - start)
            part = latent_factor_ratings(users, anime, n, seed=seed * 100_003 + index)
            order = np.argsort(part.user_idx, kind="stable")  # the real file lists each user's rows together
            writer.write_table(pa.table({
                "user_id": part.user_idx[order].astype(np.int64) + 1,
                "anime_id": part.anime_idx[order].astype(np.int64) + 1,
                "rating": part.rating[order],
                "watching_status": np.full(n, 2, np.int8),
                "watched_episodes": np.ones(n, np.int32),
            }, schema=schema), row_group_size=_CHUNK)
    os.replace(tmp, path)


def rating_range(path: Path) -> tuple[float, float]:
    """``(min, max)`` of the file's ratings from its row-group statistics (a preprocessed file keeps the raw scale;
    the network trains on it scaled to [0, 1], as the neural_network step does with the range it records)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("rating")
    stats = [meta.row_group(i).column(column).statistics for i in range(meta.num_row_groups)]
    return float(min(s.min for s in stats)), float(max(s.max for s in stats))


def train_epoch(path: Path, batch_size: int = 10_000, embedding_size: int = 128, training_path: str = "fast",
                epochs: int = 1, val_fraction: float = 0.001, seed: int = 42) -> dict[str, float]:
    """Stream ``epochs`` training epochs over ``path`` and measure them (call in a fresh process for a true peak RSS).

    Returns:
        ``train_prep_s``, ``train_epoch_s`` (the last epoch including its validation; the first also
        carries tracing and XLA compilation), ``train_rss_gb`` (peak of this process), ``train_rows``,
        ``users``, ``anime``, ``loss`` (of the last epoch).
    """
    from anime_recs.models.network.architecture import ModelParams
    from anime_recs.data.streaming import ParquetRatings, StreamedRows
    from anime_recs.models.network.training import train_model

    started = time.perf_counter()
    reader = ParquetRatings(path, val_fraction, 0.0, seed, rating_range=rating_range(path))
    users, anime = reader.encoders()
    holdout = reader.holdout(users, anime)
    train = StreamedRows(reader, users, anime, holdout.train_rows, holdout.train_rating_sum / holdout.train_rows)
    prep_s = time.perf_counter() - started
    params = ModelParams(embedding_size=embedding_size, batch_size=batch_size, epochs=epochs, training_path=training_path,
                         seed=seed)
    history = train_model(train, holdout.val, len(users), len(anime), params, verbose=False).history
    return {"train_prep_s": prep_s, "train_epoch_s": float(history["seconds"].iloc[-1]),
            "train_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
            "train_rows": float(len(train)), "users": float(len(users)), "anime": float(len(anime)),
            "loss": float(history["loss"].iloc[-1])}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--make`` a file, or measure one epoch over one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("parquet", type=Path, help="preprocessed stats parquet")
    parser.add_argument("--make", action="store_true", help="write a synthetic file at PARQUET instead of training")
    parser.add_argument("--rows", type=int, default=20_000_000, help="--make: rows")
    parser.add_argument("--users", type=int, default=325_000, help="--make: users")
    parser.add_argument("--anime", type=int, default=17_500, help="--make: anime")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--training-path", choices=("fast", "keras"), default="fast")
    parser.add_argument("--epochs", type=int, default=1, help="train_epoch_s is the last epoch's (2: steady state)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.make:
        started = time.perf_counter()
        make_parquet(args.parquet, args.rows, args.users, args.anime, args.seed)
        print(f"wrote {args.rows:,} rows to {args.parquet} in {time.perf_counter() - started:.1f} s")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as the pipeline's steps run (anime_recs.pipeline.tracking)
    result = train_epoch(args.parquet, args.batch_size, args.embedding_size, args.training_path, args.epochs,
                         seed=args.seed)
    print(f"{int(result['train_rows']):,} training rows, {int(result['users']):,} users x {int(result['anime']):,} anime, "
          f"path={args.training_path}, batch {args.batch_size:,}, {args.epochs} epoch(s), last loss {result['loss']:.4f}")
    print(" ".join(f"{key}={result[key]:.3g}" if key != "train_rows" else f"{key}={int(result[key])}"
                   for key in ("train_prep_s", "train_epoch_s", "train_rss_gb", "train_rows")))


if __name__ == "__main__":
    main()
