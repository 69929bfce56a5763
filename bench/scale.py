"""Benchmark: the pipeline's data steps at the full MyAnimeList scale (109M rows), out of core.

``--make`` writes a full-size synthetic ``animelist.csv`` (and its ``all_anime.csv``) in
chunks. Without it, each selected stage runs in a fresh subprocess and is measured
(wall time, peak RSS of that process):

- ``convert``: the download step's CSV -> parquet conversion and validation (``from_local``);
- ``preprocess``: every rule, the ``num_reviews`` filter and the scaling, out of core;
- ``train``: one streamed training epoch of the original architecture (``bench/train_scale.py``);
- ``fit``: the default model family (``config/model/hybrid.yaml``, as ``python main.py`` composes it) fitted on
  the clean file: reading it, the fit and saving the model as the neural_network step does; the saved model is
  what ``bench/serve.py --model`` serves;
- ``load``: what a recommender step does before its first answer: load the model, the clean ratings
  (only the columns it uses) and the anime table, and build ``AnimeRecommender``. The model has the
  clean file's users and anime with random 128-d embeddings (made in an untimed set-up process).

It prints a table and ends with one machine-readable line:
``preprocess_s=<x> preprocess_rss_gb=<y> train_epoch_s=<z> train_rss_gb=<w> recommender_load_s=<v> fit_s=<f> fit_rss_gb=<g>``
(``preprocess_*`` cover conversion plus preprocess: the data's path from the user's CSV to training input).

    python bench/scale.py --make                      # ~2 GB CSV in ~/.cache/anime_recs/scale (or --out)
    python bench/scale.py --stages convert,preprocess # the measurement
    python bench/scale.py --stages fit                # the default family at full scale (after preprocess)
    python bench/scale.py --make --rows 1000000 --users 3000 --out /tmp/small/animelist.csv
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anime_recs.data.synthetic import FULL_ANIME, FULL_ROWS, FULL_USERS

# Outside the checkout (about 6 GB with the stages' outputs); ANIME_RECS_SCALE_DATA moves it.
DEFAULT_OUT = Path(os.environ.get("ANIME_RECS_SCALE_DATA", Path.home() / ".cache" / "anime_recs" / "scale")) / "animelist.csv"
STAGES = ("convert", "preprocess", "train", "fit", "load")

# Each stage's child program: argv[1] is a JSON of its inputs; it prints one JSON line last.
_CHILD_HEAD = """
import json, logging, resource, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
start = time.perf_counter()
"""
_CHILD_TAIL = """
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""
CONVERT = """
from anime_recs.data.files import validate_file
from anime_recs.data.download import csv_to_parquet
csv_to_parquet(Path(args["csv"]), Path(args["parquet"]))
rows = validate_file("stats", Path(args["parquet"]))
"""
PREPROCESS = """
from anime_recs.data.files import load_anime
from anime_recs.data.preprocess import PreprocessOptions
from anime_recs.data.preprocess_file import preprocess_file
options = PreprocessOptions(num_reviews=args["num_reviews"], drop_half_watched=True, drop_unwatched=True, drop_plan=True)
result = preprocess_file(Path(args["parquet"]), Path(args["clean"]), options, load_anime(args["anime"]),
                         memory_limit_gb=args["memory_limit_gb"])
rows = result.rows
"""

# The default family on the clean file: what the neural_network step does with it (read, fit, save).
FIT = """
import pyarrow.parquet as pq
from anime_recs.evaluation.datasets import pipeline_model_config
from anime_recs.models import Interactions, build_model
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
table = pq.read_table(args["clean"], columns=["user_id", "anime_id", "rating"])
data = Interactions.from_frame(table.to_pandas(), (1.0, 10.0))
del table
config = pipeline_model_config()
model = build_model({key: config[key] for key in ("family", "ranking", "rating")})
model.fit(data)
model.save(Path(args["model"]))
rows = len(data)
print(json.dumps({"family": model.family, "fit_info": model.fit_info}), file=sys.stderr)
"""

# Untimed set-up of the load stage: a model over the clean file's users and anime (random unit 128-d embeddings:
# loading cost depends on the shapes, not on what was learnt), saved as the neural_network step saves it.
LOAD_SETUP = """
import numpy as np, pyarrow.parquet as pq
from anime_recs.core.encoding import IdEncoder
from anime_recs.models.original import OriginalNetwork
from bench.query import SIGMOID_HEAD, _unit_rows
ids = pq.read_table(args["clean"], columns=["user_id", "anime_id"])
users, anime = (np.unique(ids.column(c).to_numpy()) for c in ("user_id", "anime_id"))
del ids
rng = np.random.default_rng(0)
model = OriginalNetwork.from_embeddings(_unit_rows(rng, len(users), 128), _unit_rows(rng, len(anime), 128),
                                        IdEncoder(users, "user"), IdEncoder(anime, "anime"), SIGMOID_HEAD, (1.0, 10.0))
model.save(Path(args["model"]))
rows = len(users)
"""
# What the recommender steps do before answering (anime_recs.pipeline.steps.recommend.load_recommender, without the store).
LOAD = """
from anime_recs.data.files import load_anime
from anime_recs.models import load_model
from anime_recs.recommend import AnimeRecommender
from anime_recs.recommend.interactions import read_ratings
ratings = read_ratings(args["clean"])
rec = AnimeRecommender(model=load_model(Path(args["model"])), ratings=ratings, anime=load_anime(args["anime"]))
rows = len(ratings)
"""


@dataclass
class Measured:
    """One stage's numbers (NaN when the stage did not run)."""

    stage: str
    seconds: float = math.nan
    peak_rss_gb: float = math.nan
    rows: int = 0
    note: str = ""


def make(args: argparse.Namespace) -> None:
    """Write the synthetic ``animelist.csv`` and its ``all_anime.csv`` beside it."""
    from anime_recs.core.io import write_csv
    from anime_recs.data.sample import make_sample
    from anime_recs.data.synthetic import write_animelist_csv

    out = Path(args.out)
    catalogue = make_sample(n_users=50, n_anime=args.anime, mean_items=5, seed=args.seed).all_anime
    write_csv(catalogue, out.parent / "all_anime.csv")
    start = time.perf_counter()
    episodes = catalogue["Episodes"].replace("Unknown", "nan").astype(float).to_numpy()
    rows = write_animelist_csv(str(out), catalogue["MAL_ID"].to_numpy(), episodes, args.rows, args.users, args.seed)
    seconds = time.perf_counter() - start
    size = out.stat().st_size / 1e9
    print(f"wrote {out} ({rows:,} rows, {size:.2f} GB) in {seconds:.0f} s and {out.parent / 'all_anime.csv'}")


def _child(body: str, inputs: dict[str, object], progress: bool = False) -> Measured:
    """Run ``body`` in a fresh interpreter; its last stdout line is its measurement (``progress``: its log to stderr)."""
    code = _CHILD_HEAD + body + _CHILD_TAIL
    done = subprocess.run([sys.executable, "-c", code, json.dumps(inputs)], check=False, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: stage failed (exit {done.returncode}):\n{(done.stderr or '')[-3000:]}")
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    return Measured("", numbers["seconds"], numbers["peak_rss_gb"], numbers["rows"])


def stage_convert(args: argparse.Namespace, work: Path) -> Measured:
    """CSV -> parquet (streamed) and the download step's validation of the parquet."""
    return _child(CONVERT, {"csv": str(args.out), "parquet": str(work / "user_stats.parquet")})


def stage_preprocess(args: argparse.Namespace, work: Path) -> Measured:
    """Every preprocess rule on the converted parquet, out of core."""
    parquet = work / "user_stats.parquet"
    if not parquet.is_file():
        raise SystemExit(f"error: {parquet} is missing; run the convert stage first (--stages convert,preprocess)")
    return _child(PREPROCESS, {"parquet": str(parquet), "clean": str(work / "preprocessed_stats.parquet"),
                               "anime": str(Path(args.out).parent / "all_anime.csv"), "num_reviews": args.num_reviews,
                               "memory_limit_gb": args.memory_limit_gb})


def stage_load(args: argparse.Namespace, work: Path) -> Measured:
    """Loading the recommender's inputs at full scale: the model, the clean ratings (needed columns) and the anime."""
    clean = work / "preprocessed_stats.parquet"
    if not clean.is_file():
        raise SystemExit(f"error: {clean} is missing; run the preprocess stage first (--stages preprocess,load)")
    inputs = {"clean": str(clean), "model": str(work / "model"), "anime": str(Path(args.out).parent / "all_anime.csv")}
    setup = _child(LOAD_SETUP, inputs)
    measured = _child(LOAD, inputs)
    measured.note = f"model: {setup.rows:,} users x 128, random embeddings (set-up {setup.seconds:.0f} s, not counted)"
    return measured


def stage_fit(args: argparse.Namespace, work: Path) -> Measured:
    """The default family fitted on the clean file (read + fit + save), in a fresh process."""
    clean = work / "preprocessed_stats.parquet"
    if not clean.is_file():
        raise SystemExit(f"error: {clean} is missing; run the preprocess stage first (--stages preprocess,fit)")
    measured = _child(FIT, {"clean": str(clean), "model": str(work / "default_model")}, progress=True)
    measured.note = f"default family, saved to {work / 'default_model'} (bench/serve.py --model serves it)"
    return measured


def stage_train(args: argparse.Namespace, work: Path) -> Measured:
    """One streamed training epoch of the original architecture (batch 10,000, embedding 128) over the clean file."""
    clean = work / "preprocessed_stats.parquet"
    if not clean.is_file():
        raise SystemExit(f"error: {clean} is missing; run the preprocess stage first (--stages preprocess,train)")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "train_scale.py"), str(clean)], check=False, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: train stage failed:\n{done.stderr[-3000:]}")
    numbers = dict(field.split("=", 1) for field in done.stdout.strip().splitlines()[-1].split())
    return Measured("", float(numbers["train_epoch_s"]), float(numbers["train_rss_gb"]), int(numbers["train_rows"]),
                    note=f"bench/train_scale.py: fast path, first epoch (includes XLA compilation); "
                         f"reading passes before it {float(numbers['train_prep_s']):.0f} s")


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], Measured]] = {
    "convert": stage_convert, "preprocess": stage_preprocess, "train": stage_train, "fit": stage_fit,
    "load": stage_load,
}


def _stages(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    return chosen


def measure(args: argparse.Namespace) -> list[Measured]:
    """Run the selected stages in order, each in its own process."""
    if not Path(args.out).is_file():
        raise SystemExit(f"error: {args.out} does not exist; make it first: python bench/scale.py --make --out {args.out}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for stage in STAGES:
        if stage in args.stages:
            print(f"running {stage} …", flush=True)
            measured = RUNNERS[stage](args, work)
            measured.stage = stage
        else:
            measured = Measured(stage, note="not selected")
        results.append(measured)
    return results


def report(results: list[Measured]) -> None:
    """Print the table and the last, machine-readable line."""
    print(f"\n{'stage':<11}{'seconds':>9}{'peak RSS GB':>13}{'rows':>14}  note")
    for m in results:
        print(f"{m.stage:<11}{m.seconds:>9.1f}{m.peak_rss_gb:>13.2f}{m.rows:>14,}  {m.note}")
    by = {m.stage: m for m in results}
    data = [by["convert"], by["preprocess"]]
    seconds = sum(m.seconds for m in data)
    rss = max(m.peak_rss_gb for m in data)
    print(f"{'total data':<11}{seconds:>9.1f}{rss:>13.2f}{'':>14}  convert + preprocess (target: < 240 s, < 6 GB)")
    print("targets of the others: one epoch < 8 GB; fit < 1,800 s, < 16 GB; load < 20 s, < 4 GB\n")
    print(f"preprocess_s={seconds:.1f} preprocess_rss_gb={rss:.2f} train_epoch_s={by['train'].seconds:.1f} "
          f"train_rss_gb={by['train'].peak_rss_gb:.2f} recommender_load_s={by['load'].seconds:.1f} "
          f"fit_s={by['fit'].seconds:.1f} fit_rss_gb={by['fit'].peak_rss_gb:.2f}")


def main(argv: list[str] | None = None) -> None:
    """Make the data set or measure the stages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--make", action="store_true", help="write the synthetic CSV (and all_anime.csv beside it) and stop")
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help="rows of the synthetic CSV")
    parser.add_argument("--users", type=int, default=FULL_USERS, help="distinct users")
    parser.add_argument("--anime", type=int, default=FULL_ANIME, help="distinct anime")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the synthetic animelist.csv")
    parser.add_argument("--work", type=Path, default=DEFAULT_OUT.parent / "work", help="folder for the stages' outputs")
    parser.add_argument("--stages", type=_stages, default=list(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    parser.add_argument("--num-reviews", type=int, default=50, help="preprocess num_reviews")
    parser.add_argument("--memory-limit-gb", type=float, default=2.0, help="preprocess data.memory_limit_gb")
    args = parser.parse_args(argv)
    if args.make:
        make(args)
        return
    report(measure(args))


if __name__ == "__main__":
    main()
