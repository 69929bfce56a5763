"""Choosing a family's defaults on validation splits carved out of TRAIN, never TEST.

``anime-recs tune --family ease --grid l2_per_count=40,80,160 --grid liked_weight=1,2,4``
applies the evaluation protocol to each data set, splits TRAIN again the same way
(:func:`~anime_recs.evaluation.validation_split`), fits every setting of the grid on
the inner TRAIN and scores it on the inner TEST: nDCG@10 for ranking families, RMSE
for rating families. Each trial is an MLflow child run of one ``tune-<family>`` run.
The winner is the setting with the best mean score *relative to the best on each data
set*, so one default serves every data set (no per-data-set settings); ``--write``
puts it into ``config/model/<family>.yaml`` (and the matching half of
``config/model/hybrid.yaml``) with the command that found it.
"""

from __future__ import annotations

import itertools
import logging
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anime_recs.evaluation.datasets import DATASETS, REPO, BenchData, pipeline_model_config
from anime_recs.core.errors import UserInputError
from anime_recs.evaluation import FamilyModel, Split, protocol_split, ranking_metrics, rating_metrics, validation_split
from anime_recs.models import FAMILIES, build_model

logger = logging.getLogger(__name__)

#: What each tunable family is tuned for, ``(metric, higher is better)``: each family declares its own.
OBJECTIVES: dict[str, tuple[str, bool]] = {name: cls.tuning_objective for name, cls in FAMILIES.items()
                                           if cls.tuning_objective is not None}


def default_grid(family: str) -> list[str]:
    """The family's own search space as ``--grid`` items (what ``anime-recs tune`` tries when given none)."""
    return [f"{key}={','.join(map(str, values))}" for key, values in FAMILIES[family].tuning_grid.items()]


@dataclass
class Trial:
    """One setting of the grid and its validation scores per data set."""

    setting: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    relative: float = float("nan")
    fit_s: float = 0.0


def parse_grid(items: list[str]) -> list[dict[str, Any]]:
    """``["a=1,2", "b=x"]`` -> every combination, as dicts (values read as YAML scalars).

    Raises:
        UserInputError: an item that is not ``KEY=V1[,V2...]``.
    """
    import yaml

    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserInputError(f"grid item {item!r} is not KEY=V1,V2,...; e.g. --grid l2_per_count=40,80")
        axes.append((key.strip(), [yaml.safe_load(v) for v in values.split(",")]))
    return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])] or [{}]


def _inner_split(data: BenchData, data_dir: Path) -> Split:
    """The protocol split of a data set, then the protocol again inside its TRAIN (what tuning scores on)."""
    outer = protocol_split(data.load(data_dir), data.cols.user, data.cols.item, data.cols.rating, min_rating=data.min_rating)
    return validation_split(outer)


def _score(family: str, setting: dict[str, Any], data: BenchData, inner: Split) -> tuple[float, float]:
    """Fit one setting on a data set's inner TRAIN; its validation score and fit seconds."""
    model = FamilyModel(build_model(pipeline_model_config(family, setting)), rating_range=data.rating_bounds)
    started = time.perf_counter()
    model.fit(inner.train, inner.cols)
    fit_s = time.perf_counter() - started
    if OBJECTIVES[family][0] == "RMSE":
        truth = inner.test[inner.cols.rating].to_numpy(np.float64)
        predicted = model.predict(inner.test[inner.cols.user].to_numpy(), inner.test[inner.cols.item].to_numpy())
        return rating_metrics(truth, np.clip(predicted, *data.rating_bounds))["rmse"], fit_s
    return ranking_metrics(model.score, inner, data.relevant_threshold)["ndcg"], fit_s


def tune(family: str, grid: list[dict[str, Any]], datasets: list[str], data_dir: Path, experiment: str = "tuning",
         registry: dict[str, BenchData] = DATASETS) -> tuple[Trial, list[Trial]]:
    """Try every setting on every data set's validation split; return the winner and all trials.

    Args:
        family: ``ease``, ``neighbourhood`` or ``original``.
        grid: Settings to try (option -> value).
        datasets: Keys of ``registry``.
        data_dir: Where the data files are.
        experiment: MLflow experiment of the tuning runs.
        registry: The data sets known by name.

    Raises:
        UserInputError: an unknown family or data set, or an option the family does not have.
    """
    if family not in OBJECTIVES:
        raise UserInputError(f"cannot tune family {family!r}; choose from: {', '.join(OBJECTIVES)} "
                             "(the hybrid is tuned through its halves, ease and neighbourhood)")
    unknown = [d for d in datasets if d not in registry]
    if unknown:
        raise UserInputError(f"unknown data set {unknown[0]!r}; choose from: {', '.join(registry)}")
    for setting in grid:  # every option must exist before hours are spent
        build_model(pipeline_model_config(family, setting))
    import mlflow

    from anime_recs.pipeline.tracking import default_tracking_store, ensure_tracking_store, use_experiment

    default_tracking_store(Path.cwd())
    ensure_tracking_store()
    use_experiment(experiment)
    metric, higher = OBJECTIVES[family]
    trials = [Trial(setting) for setting in grid]
    inner = {key: _inner_split(registry[key], data_dir) for key in datasets}  # once per data set, not per trial
    with mlflow.start_run(run_name=f"tune-{family}") as parent:
        mlflow.log_params({"family": family, "datasets": ",".join(datasets), "grid_size": len(grid),
                           "command": " ".join(sys.argv)[:6000]})
        for number, trial in enumerate(trials, 1):
            with mlflow.start_run(run_name=f"trial-{number}", nested=True):
                mlflow.log_params({k: v for k, v in trial.setting.items()} or {"setting": "defaults"})
                for key in datasets:
                    trial.scores[key], fit_s = _score(family, trial.setting, registry[key], inner[key])
                    trial.fit_s += fit_s
                    mlflow.log_metrics({f"{key}.val_{metric.replace('@', '_at_')}": trial.scores[key],
                                        f"{key}.fit_s": fit_s})
            print(f"trial {number}/{len(trials)} {trial.setting}: "
                  + ", ".join(f"{k} {metric} {v:.4f}" for k, v in trial.scores.items()), flush=True)
        for key in datasets:
            values = np.array([t.scores[key] for t in trials])
            best = values.max() if higher else values.min()
            for trial, value in zip(trials, values):
                rel = value / best if higher else best / value
                trial.relative = (0.0 if np.isnan(trial.relative) else trial.relative) + rel / len(datasets)
        winner = max(trials, key=lambda t: t.relative)
        mlflow.log_params({f"best.{k}": v for k, v in winner.setting.items()})
        mlflow.log_metric("best_mean_relative", winner.relative)
        logger.info("tuning run %s: winner %s", parent.info.run_id, winner.setting)
    return winner, trials


def trials_frame(trials: list[Trial], family: str) -> pd.DataFrame:
    """The trials as a table, best first."""
    metric = OBJECTIVES[family][0]
    rows = [{**t.setting, **{f"{k} val {metric}": v for k, v in t.scores.items()}, "mean relative": t.relative,
             "fit_s": t.fit_s} for t in trials]
    return pd.DataFrame(rows).sort_values("mean relative", ascending=False, kind="stable").reset_index(drop=True)


def _set_option(text: str, key: str, value: Any, indent: str) -> str:
    """Replace ``<indent>key: old  # comment`` keeping the comment; one-line error if the key is absent."""
    pattern = re.compile(rf"^({re.escape(indent)}{re.escape(key)}:[ \t]*)([^#\n]*?)([ \t]*(#.*)?)$", re.M)
    rendered = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    new, count = pattern.subn(lambda m: f"{m.group(1)}{rendered}{m.group(3)}", text, count=1)
    if count != 1:
        raise UserInputError(f"option {key!r} not found in the config file; add it before writing tuned values")
    return new


def write_defaults(family: str, setting: dict[str, Any], command: str, config_dir: Path = REPO / "config") -> list[Path]:
    """Write ``setting`` as the family's defaults (and the hybrid's matching half), noting the command.

    Values are replaced in place, keeping each line's comment; a ``# tuned ...`` line
    records the command (it replaces the one a previous tuning wrote).
    """
    note = f"# tuned on validation splits of TRAIN by: {command} ({time.strftime('%Y-%m-%d')})"
    stale = re.compile(r"^[ \t]*# tuned on validation splits of TRAIN by: .*\n", re.M)
    own = config_dir / "model" / f"{family}.yaml"
    text = stale.sub("", own.read_text())
    for key, value in setting.items():
        text = _set_option(text, key, value, "")
    text = text.replace(f"\nfamily: {family}\n", f"\nfamily: {family}\n{note}\n", 1)
    own.write_text(text)
    written = [own]
    part = FAMILIES[family].hybrid_part
    if part is not None:
        path = config_dir / "model" / "hybrid.yaml"
        head, sep, rest = path.read_text().partition(f"\n{part}:")
        line_end = rest.index("\n")
        first, rest = rest[:line_end + 1], rest[line_end + 1:]
        block_end = re.search(r"^\S", rest, re.M)
        block, tail = (rest[: block_end.start()], rest[block_end.start():]) if block_end else (rest, "")
        block = stale.sub("", block)
        for key, value in setting.items():
            block = _set_option(block, key, value, "  ")
        path.write_text(head + sep + first + f"  {note}\n" + block + tail)
        written.append(path)
    return written


def add_command(commands: Any) -> None:
    """Register ``anime-recs tune`` on the CLI's subparsers."""
    import argparse

    from anime_recs.evaluation.datasets import default_data_dir

    tune_cmd = commands.add_parser(
        "tune", help="choose a model family's defaults on validation splits of TRAIN (MLflow child run per trial)",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tune_cmd.add_argument("--family", required=True, choices=sorted(OBJECTIVES),
                          help="family to tune (ease: the hybrid's ranking half, by nDCG@10; neighbourhood: its rating half, by RMSE)")
    tune_cmd.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                          help="an option and the values to try (repeat for more options; every combination is tried); "
                               "none: the family's own search space around its defaults")
    tune_cmd.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=sorted(DATASETS),
                          help="real data sets whose validation splits decide (one default must serve all)")
    tune_cmd.add_argument("--data-dir", type=Path, default=default_data_dir(), help="folder holding mal2020/ and movielens/")
    tune_cmd.add_argument("--write", action="store_true",
                          help="write the winner into config/model/<family>.yaml and the hybrid's matching half")


def run_cli(family: str, grid_items: list[str], datasets: list[str], data_dir: Path, write: bool) -> int:
    """``anime-recs tune``: tune, print the table, optionally write the defaults."""
    from anime_recs.core.io import print_table

    grid = parse_grid(grid_items or (default_grid(family) if family in OBJECTIVES else []))
    print(f"tuning {family} ({OBJECTIVES.get(family, ('?',))[0]} on validation splits of TRAIN) over {len(grid)} "
          f"setting(s) x {len(datasets)} data set(s)", flush=True)
    winner, trials = tune(family, grid, datasets, data_dir)
    print_table(trials_frame(trials, family), f"{family}: validation results, best first")
    print(f"best: {winner.setting} (mean relative score {winner.relative:.4f})")
    if write:
        command = "anime-recs tune " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        for path in write_defaults(family, winner.setting, command):
            print(f"wrote {path}")
    return 0


__all__ = ["FAMILIES", "OBJECTIVES", "Trial", "parse_grid", "run_cli", "trials_frame", "tune", "write_defaults"]
