"""preprocess step: clean the raw user stats and scale ratings.

Input: the raw user-stats artifact (and the all-anime artifact for
``drop_half_watched``). Output: ``preprocessed_stats.parquet`` (type
``preprocessed_data``) whose metadata holds the rating scaling and the
rows removed by each rule.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from ..data import load_anime, load_stats
from ..io import print_table, write_parquet
from ..preprocess import PreprocessOptions, preprocess
from ..tracking import StepContext

logger = logging.getLogger(__name__)


def run_preprocess(
    ctx: StepContext,
    raw_stats: str,
    all_anime: str,
    output_artifact: str,
    output_type: str,
    output_description: str,
    options: PreprocessOptions,
    raw_type: str = "raw_data",
    save_clean_locally: bool = False,
    clean_dir: str = "local_data/clean",
) -> str:
    """Load, clean, scale and publish; return the published ``name:vN``."""
    stats_artifact = ctx.use_artifact(raw_stats, raw_type)
    stats = load_stats(stats_artifact.file(), shown=stats_artifact.ref)
    if options.drop_half_watched:
        anime_artifact = ctx.use_artifact(all_anime, raw_type)
        anime = load_anime(anime_artifact.file(), shown=anime_artifact.ref)
    else:
        anime = None
    clean, report, scaling = preprocess(stats, options, anime)
    print_table(report, "rows removed by each rule")
    ctx.log_metrics({f"removed_{row.rule}": row.rows_removed for row in report.itertuples() if row.rule != "input"})
    ctx.log_metrics({"rows_in": len(stats), "rows_out": len(clean), "users_out": clean["user_id"].nunique(),
                     "anime_out": clean["anime_id"].nunique()})
    target = write_parquet(clean, ctx.workdir / output_artifact)
    metadata = {
        "scaling": scaling.as_dict(),
        "options": asdict(options),
        "removed": dict(zip(report["rule"], report["rows_removed"].astype(int).tolist(), strict=True)),
        "rows": len(clean),
        "users": int(clean["user_id"].nunique()),
        "anime": int(clean["anime_id"].nunique()),
    }
    artifact = ctx.log_artifact(output_artifact, output_type, {output_artifact: target}, output_description, metadata, move=True)
    if save_clean_locally:
        Path(clean_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.file(), Path(clean_dir) / output_artifact)
    return artifact.ref
