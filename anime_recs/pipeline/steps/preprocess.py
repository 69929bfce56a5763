"""preprocess step: clean the raw user stats (ratings stay on their scale; its range goes to the metadata).

Input: the raw user-stats artifact (and the all-anime artifact for
``drop_half_watched``). Output: ``preprocessed_stats.parquet`` (type
``preprocessed_data``) whose metadata holds the rating scaling and the
rows removed by each rule. Runs out of core: memory follows ``data.memory_limit_gb``,
not the size of the file.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from anime_recs.data.files import is_parquet, load_anime
from anime_recs.data.download import csv_to_parquet
from anime_recs.core.io import print_table
from anime_recs.data.preprocess import RAW_RATINGS, PreprocessOptions
from anime_recs.data.preprocess_file import DEFAULT_MEMORY_LIMIT_GB, preprocess_file
from anime_recs.pipeline.tracking import StepContext

logger = logging.getLogger(__name__)


def run_preprocess(
    ctx: StepContext,
    raw_stats: str,
    all_anime: str,
    output_artifact: str,
    output_type: str,
    output_description: str,
    options: PreprocessOptions,
    raw_type: str,
    save_clean_locally: bool = False,
    clean_dir: str = "local_data/clean",
    memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB,
) -> str:
    """Clean out of core (memory bounded by ``memory_limit_gb``), publish; return the published ``name:vN``."""
    stats_artifact = ctx.use_artifact(raw_stats, raw_type)
    if options.drop_half_watched:
        anime_artifact = ctx.use_artifact(all_anime, raw_type)
        anime = load_anime(anime_artifact.file(), shown=anime_artifact.ref)
    else:
        anime = None
    source = stats_artifact.file()
    if not is_parquet(source):  # the download step always publishes parquet; an older CSV artifact is converted first
        source = ctx.workdir / "raw_stats.parquet"
        csv_to_parquet(stats_artifact.file(), source, shown=stats_artifact.ref)
    target = ctx.workdir / output_artifact
    result = preprocess_file(source, target, options, anime, shown=stats_artifact.ref, memory_limit_gb=memory_limit_gb,
                             scratch=ctx.workdir / "scratch")
    report = result.report
    print_table(report, "rows removed by each rule")
    ctx.log_metrics({f"removed_{row.rule}": row.rows_removed for row in report.itertuples() if row.rule != "input"})
    ctx.log_metrics({"rows_in": int(report["rows_left"].iloc[0]), "rows_out": result.rows, "users_out": result.users,
                     "anime_out": result.anime})
    metadata = {
        "scaling": result.scaling.as_dict(),
        "ratings": RAW_RATINGS,
        "options": asdict(options),
        "removed": dict(zip(report["rule"], report["rows_removed"].astype(int).tolist(), strict=True)),
        "rows": result.rows,
        "users": result.users,
        "anime": result.anime,
    }
    artifact = ctx.log_artifact(output_artifact, output_type, {output_artifact: target}, output_description, metadata, move=True)
    if save_clean_locally:
        Path(clean_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.file(), Path(clean_dir) / output_artifact)
    return artifact.ref
