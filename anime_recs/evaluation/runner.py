"""Fitting and scoring models side by side: peak memory, the results table, markdown."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from anime_recs.evaluation.baselines import Recommender
from anime_recs.evaluation.metrics import ranking_metrics, rating_metrics
from anime_recs.evaluation.split import Split

logger = logging.getLogger(__name__)


class PeakRss:
    """Context manager measuring the process's peak resident set size inside the block.

    On Linux the kernel's high-water mark (``VmHWM``) is reset on entry by writing
    ``5`` to ``/proc/self/clear_refs`` and read on exit, so the figure is exact and
    belongs to this block alone. Elsewhere (or if the reset is refused) a thread
    samples the RSS every 20 ms, which can miss short spikes. Either way the figure
    includes everything the process already holds (libraries, data).

    Attributes:
        start_bytes: RSS on entry.
        peak_bytes: Peak RSS in bytes, set on exit.
        method: ``"vmhwm"`` or ``"sampled"``.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self.method = "sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(field: str) -> int | None:
        """A ``/proc/self/status`` memory field in bytes, or None where there is none."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while True:
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> Self:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
                rss = self._status("VmRSS")
                if rss is not None and self._status("VmHWM") is not None:
                    self.method = "vmhwm"
                    self.start_bytes = rss
                    return self
        import psutil

        self.start_bytes = psutil.Process().memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method == "vmhwm":
            self.peak_bytes = self._status("VmHWM") or 0
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


def evaluate_models(
    models: Mapping[str, Recommender],
    split: Split,
    relevant_threshold: float,
    rating_bounds: tuple[float, float],
    k: int = 10,
) -> pd.DataFrame:
    """Fit and evaluate every model on one split, side by side in this process.

    Predictions are clipped to ``rating_bounds`` before RMSE/MAE, as Surprise does
    for its own models, so no model gains or loses by predicting off the scale.

    Args:
        models: Display name -> unfitted model.
        split: The protocol split.
        relevant_threshold: Rating that counts as relevant for the ranking metrics.
        rating_bounds: ``(lowest, highest)`` rating of the data's scale.
        k: Ranking cut-off.

    Returns:
        One row per model, indexed by name: ``RMSE, MAE, P@k, R@k, nDCG@k, MAP@k,
        Coverage@k, fit_s, eval_s, peak_rss_gb, added_rss_gb`` (NaN RMSE/MAE for
        ranking-only models). ``eval_s`` is the time to predict TEST and rank;
        ``peak_rss_gb`` is the whole process's peak while that model was fitted and
        evaluated (so it includes the data and every library already imported);
        ``added_rss_gb`` is that peak minus the RSS just before the model started.
    """
    cols = split.cols
    test_users = split.test[cols.user].to_numpy(dtype=np.int64)
    test_items = split.test[cols.item].to_numpy(dtype=np.int64)
    test_ratings = split.test[cols.rating].to_numpy(dtype=np.float64)
    rows: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        logger.info("evaluating %s", name)
        with PeakRss() as peak:
            start = time.perf_counter()
            model.fit(split.train, cols)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            if getattr(model, "predicts_ratings", True):
                pred = np.clip(np.asarray(model.predict(test_users, test_items), dtype=np.float64), *rating_bounds)
                errors = rating_metrics(test_ratings, pred)
            else:
                errors = {"rmse": math.nan, "mae": math.nan}
            ranking = ranking_metrics(model.score, split, relevant_threshold, k=k)
            eval_s = time.perf_counter() - start
        rows[name] = {
            "RMSE": errors["rmse"],
            "MAE": errors["mae"],
            f"P@{k}": ranking["precision"],
            f"R@{k}": ranking["recall"],
            f"nDCG@{k}": ranking["ndcg"],
            f"MAP@{k}": ranking["map"],
            f"Coverage@{k}": ranking["coverage"],
            "fit_s": fit_s,
            "eval_s": eval_s,
            "peak_rss_gb": peak.peak_bytes / 1e9,
            "added_rss_gb": max(0, peak.peak_bytes - peak.start_bytes) / 1e9,
        }
        logger.info("%s: %s", name, {key: round(value, 4) for key, value in rows[name].items()})
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def to_markdown(table: pd.DataFrame, digits: Mapping[str, int] | None = None, default_digits: int = 4) -> str:
    """Render a table as a GitHub markdown table without optional dependencies.

    Args:
        table: Rows to render; the index becomes the first column.
        digits: Decimals per column (times and memory default to 2).
        default_digits: Decimals of other float columns.

    Returns:
        The markdown text (numbers right-aligned, NaN shown as ``-``), ending in a newline.
    """
    places = {"fit_s": 2, "eval_s": 2, "peak_rss_gb": 2, "added_rss_gb": 2, **(digits or {})}
    frame = table.reset_index()

    def cell(column: str, value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "-" if math.isnan(value) else f"{value:.{places.get(column, default_digits)}f}"
        return str(value)

    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "|".join("---:" if is_num else "---" for is_num in numeric) + "|",
    ]
    body = frame.astype(object).to_numpy()
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |" for row in body]
    return "\n".join(lines) + "\n"
