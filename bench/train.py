"""Training speed of the original configuration vs our default, side by side.

Trains the original model (91k users, 17.5k anime, embedding 128, batch
10,000, the original learning-rate schedule) on ``latent_factor_ratings``
(7M rows) twice in one run, each variant in its own subprocess so peak RSS is
measured per variant:

(a) ``keras``: ``training_path='keras'``: plain ``model.fit`` on numpy arrays,
    stock Adam, no XLA, exactly as the original ran;
(b) ``fast``: our default ``training_path='fast'`` (lazy Adam on the touched
    rows in place, :mod:`anime_recs.models.network.lazy_adam`);
(a') and (b'): the same two with ``TF_CPU_ALLOCATOR_USE_BFC=true``, the
    allocator our entry points set. (a') vs (b') is the like-for-like
    comparison and the default; (a) vs (b) shows how much TensorFlow's default
    CPU allocator (returning large buffers to the OS and page-faulting them
    back in at every step) costs the stock path on top.

Both start from the same initial weights (same seed) and hold out the same
validation rows. Per variant the table shows seconds per epoch and samples/s
over the steady-state epochs (epoch 1 excluded: it carries tracing and XLA
compilation), the process CPU seconds per steady-state epoch (all threads; a
second view that other jobs on the machine disturb less), the validation BCE after each epoch, peak RSS and the whole
``train_model`` wall time. The validation BCE is the data term only (no L2
penalty), BatchNormalization in inference mode, and is computed *the same way
for both*: after every epoch the last-epoch checkpoint is loaded into a fresh
model and scored in NumPy (:class:`anime_recs.models.network.embeddings.PredictionHead`);
``hist`` is each path's own history ``val_loss``, for cross-checking. The
last line is ``speedup=<x> val_loss_delta_pct=<y>``: samples/s of (b') over
(a'), like for like (or of (b) over (a) when only those two ran); positive
delta = ours has the worse validation BCE after the last epoch.

Timings from a shared machine are only comparable within one run.

Example::

    python bench/train.py                       # full size, like for like: about 5 min on 2 cores
    python bench/train.py --variants keras,fast,keras+bfc,fast+bfc   # also the default allocator: about 10 min
    python bench/train.py --variants keras+bfc,fast+bfc --rows 500000 --users 5000 --anime 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = {
    "keras": "(a) original: model.fit, stock Adam, no XLA",
    "fast": "(b) ours: lazy Adam in place",
    "keras+bfc": "(a') = (a) with TF_CPU_ALLOCATOR_USE_BFC",
    "fast+bfc": "(b') = (b) with TF_CPU_ALLOCATOR_USE_BFC",
}
# TensorFlow's default CPU allocator hands large freed buffers back to the OS,
# so every step page-faults them in again; stock Adam on dense embedding
# gradients allocates ~0.3 GB per step and spends most of its time in the
# kernel on some VMs. The BFC allocator keeps the memory. The headline
# comparison is (a) vs (b) as they run by default; (a')/(b') show how much of
# the gap is the allocator.
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=7_000_000, help="rows generated (train + validation)")
    parser.add_argument("--users", type=int, default=91_000, help="number of users")
    parser.add_argument("--anime", type=int, default=17_500, help="number of anime")
    parser.add_argument("--val-rows", type=int, default=100_000, help="rows held out for validation")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (>= 2 for a steady-state figure)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="batch size (the original's)")
    parser.add_argument("--embedding-size", type=int, default=128, help="embedding size (the original's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--variants", default="keras+bfc,fast+bfc", help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers to this JSON file")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (epoch 1 is excluded from the steady state)")
    if not 0 < args.val_rows < args.rows:
        parser.error("--val-rows must be between 1 and --rows - 1")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    return args


def numpy_val_bce(weights_file: Path, n_users: int, n_anime: int, params, val) -> float:  # type: ignore[no-untyped-def]
    """Validation BCE of a checkpoint, scored in NumPy: identical code for both variants."""
    from anime_recs.models.network.embeddings import PredictionHead, extract_embeddings
    from anime_recs.models.network.architecture import build_model

    model = build_model(n_users, n_anime, params)
    with warnings.catch_warnings():
        # The keras variant's file also holds Adam's slots, which this fresh
        # model's unbuilt optimizer skips with a warning; only weights matter here.
        warnings.simplefilter("ignore")
        model.load_weights(weights_file)
    users, anime = extract_embeddings(model)
    head = PredictionHead.from_model(model)
    cosine = np.einsum("ij,ij->i", users[val.user_idx], anime[val.anime_idx])
    pred = np.clip(head.predict(cosine).astype(np.float64), 1e-7, 1 - 1e-7)  # Keras' clipping
    y = val.rating.astype(np.float64)
    return float(-np.mean(y * np.log(pred) + (1 - y) * np.log(1 - pred)))


def run_worker(args: argparse.Namespace) -> None:
    """Train one variant and write its numbers to ``args.result``."""
    from anime_recs.models.network.architecture import ModelParams
    from anime_recs.data.synthetic import latent_factor_ratings
    from anime_recs.models.network.trainer import LAST_WEIGHTS
    from anime_recs.models.network.training import train_model

    data = latent_factor_ratings(args.users, args.anime, args.rows, seed=args.seed)
    split = args.rows - args.val_rows
    train, val = data.take(np.arange(split)), data.take(np.arange(split, args.rows))
    del data
    params = ModelParams(
        embedding_size=args.embedding_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.epochs,  # a benchmark runs every epoch
        training_path=args.worker.split("+")[0],
    )
    numpy_bce: list[float] = []
    cpu_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        checkpoints = Path(tmp)
        cpu_mark = [time.process_time()]

        def score(epoch: int, row: dict) -> None:
            # CPU time of the process (all threads) per epoch, scoring excluded:
            # less sensitive than wall time to other jobs on a shared machine.
            cpu_seconds.append(time.process_time() - cpu_mark[0])
            numpy_bce.append(numpy_val_bce(checkpoints / LAST_WEIGHTS, args.users, args.anime, params, val))
            cpu_mark[0] = time.process_time()

        started = time.perf_counter()
        result = train_model(train, val, args.users, args.anime, params, checkpoint_dir=checkpoints, on_epoch_end=score)
        wall = time.perf_counter() - started
    history = result.history
    steady = history["seconds"].iloc[1:]
    out = {
        "variant": args.worker,
        "train_rows": len(train),
        "seconds": history["seconds"].tolist(),
        "steady_seconds": float(steady.mean()),
        "samples_per_s": float(len(train) / steady.mean()),
        "cpu_seconds": cpu_seconds,
        "steady_cpu_seconds": float(np.mean(cpu_seconds[1:])),
        "val_bce": numpy_bce,
        "hist_val_loss": history["val_loss"].tolist(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": wall,
    }
    args.result.write_text(json.dumps(out))


def run_variant(variant: str, args: argparse.Namespace, argv: list[str]) -> dict:
    """Run one variant in a fresh interpreter (its own peak RSS, no shared TF state)."""
    with tempfile.TemporaryDirectory(prefix="bench_train_result_") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", variant, "--result", str(result)]
        print(f"--- running {VARIANTS[variant]}", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        env.pop(BFC_ENV, None)
        if variant.endswith("+bfc"):
            env[BFC_ENV] = "true"
        subprocess.run(cmd, check=True, env=env)
        return json.loads(result.read_text())


def print_table(results: dict[str, dict], epochs: int) -> None:
    bce_cols = [f"val BCE e{i + 1}" for i in range(epochs)]
    header = ["variant", "s/epoch (steady)", "samples/s", "CPU s/epoch", *bce_cols, "hist val_loss (last)", "peak RSS MB", "wall s"]
    rows = []
    for name, r in results.items():
        rows.append(
            [
                VARIANTS[name],
                f"{r['steady_seconds']:.1f}",
                f"{r['samples_per_s']:,.0f}",
                f"{r['steady_cpu_seconds']:.1f}",
                *(f"{v:.4f}" for v in r["val_bce"]),
                f"{r['hist_val_loss'][-1]:.4f}",
                f"{r['peak_rss_mb']:,.0f}",
                f"{r['wall_s']:.0f}",
            ]
        )
    for slow, fast, label in (("keras", "fast", "ratio (b)/(a)"), ("keras+bfc", "fast+bfc", "ratio (b')/(a')")):
        if {slow, fast} <= set(results):
            a, b = results[slow], results[fast]
            rows.append(
                [
                    label,
                    f"{b['steady_seconds'] / a['steady_seconds']:.3f}",
                    f"{b['samples_per_s'] / a['samples_per_s']:.2f}x",
                    f"{b['steady_cpu_seconds'] / a['steady_cpu_seconds']:.3f}",
                    *(f"{vb / va:.3f}" for va, vb in zip(a["val_bce"], b["val_bce"])),
                    f"{b['hist_val_loss'][-1] / a['hist_val_loss'][-1]:.3f}",
                    f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}",
                    f"{b['wall_s'] / a['wall_s']:.2f}",
                ]
            )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    print(
        f"{args.rows:,} rows ({args.val_rows:,} validation), {args.users:,} users, {args.anime:,} anime, "
        f"embedding {args.embedding_size}, batch {args.batch_size}, {args.epochs} epochs, {os.cpu_count()} CPUs",
        flush=True,
    )
    results = {v: run_variant(v, args, argv) for v in args.variants.split(",")}
    print()
    print_table(results, args.epochs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    pairs = [(a, b) for a, b in (("keras+bfc", "fast+bfc"), ("keras", "fast")) if {a, b} <= set(results)]
    if pairs:
        a, b = (results[name] for name in pairs[0])
        speedup = b["samples_per_s"] / a["samples_per_s"]
        delta = (b["val_bce"][-1] - a["val_bce"][-1]) / a["val_bce"][-1] * 100
        print(f"speedup={speedup:.2f} val_loss_delta_pct={delta:.2f}")


if __name__ == "__main__":
    main()
