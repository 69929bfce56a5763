"""evaluate step: the configured model family, its similar-users recommender and baselines under the protocol.

Input: the preprocessed stats (ratings mapped back to their raw scale with the
scaling in its metadata). The protocol (:func:`anime_recs.evaluation.protocol_split`)
holds out 20 % of each user's ratings; every model is fitted on TRAIN and scored on
TEST. ``ours`` is the family the neural_network step fits (``model=...``), scored
through the same object the recommender steps serve; ``ours-similar-users`` is the
``user_recs`` ranking over that family's user representations.
Output: ``evaluation_metrics.csv`` (type ``metrics``): one row per model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from anime_recs.core.options import validate_config
from anime_recs.evaluation import FamilyModel, GlobalMean, Popularity, SimilarUsersModel, UserItemBias, evaluate_models, protocol_split
from anime_recs.models import build_model
from anime_recs.core.io import print_table, write_csv
from anime_recs.data.preprocess import Scaling, raw_ratings
from anime_recs.pipeline.tracking import StepContext

logger = logging.getLogger(__name__)


def run_evaluate(ctx: StepContext, input_data: str, input_type: str, model_cfg: dict[str, Any], relevant_threshold: float,
                 k: int, output: str, output_type: str, seed: int) -> str:
    """Split, fit every model, log metrics to MLflow and publish the table."""
    validate_config({"model": model_cfg})  # e.g. model.test_size=1.5 when the step runs on its own
    artifact = ctx.use_artifact(input_data, input_type)
    scaling = Scaling(**artifact.metadata["scaling"])
    frame = pd.read_parquet(artifact.file(), columns=["user_id", "anime_id", "rating"])
    frame["rating"] = raw_ratings(frame["rating"].to_numpy(), artifact.metadata).astype(np.float64)
    split = protocol_split(frame, min_rating=scaling.rating_min)
    print(f"protocol split: {len(split.train):,} train / {len(split.test):,} test rows; TEST checksum {split.checksum}", flush=True)
    scale = (scaling.rating_min, scaling.rating_max)
    ours = FamilyModel(build_model(model_cfg), rating_range=scale)
    models = {
        "GlobalMean": GlobalMean(),
        "Popularity": Popularity(relevant_threshold),
        "UserItemBias": UserItemBias(),
        "ours": ours,
        "ours-similar-users": SimilarUsersModel(ours),  # the same fitted family, ranked as user_recs does
    }
    table = evaluate_models(models, split, relevant_threshold, (scaling.rating_min, scaling.rating_max), k=k)
    table = table.reset_index(names="model")
    print_table(table, f"evaluation on held-out ratings (relevant >= {relevant_threshold:g}, k={k})")
    ctx.log_table(table, output)
    for row in table.to_dict("records"):
        ctx.log_metrics({f"{row['model']}.{key}".replace("@", "_at_"): value for key, value in row.items()
                         if key != "model" and isinstance(value, (int, float)) and pd.notna(value)})
    path = write_csv(table, ctx.workdir / output)
    metadata = {"checksum": split.checksum, "train_rows": len(split.train), "test_rows": len(split.test),
                "relevant_threshold": relevant_threshold, "k": k}
    ref = ctx.log_artifact(output, output_type, {output: path}, f"Protocol metrics of our {model_cfg.get('family', 'hybrid')} model and baselines", metadata).ref
    from anime_recs.pipeline.registry import promotion_gate  # champion moves only when the new model is not worse

    promotion_gate(ctx, float(table.set_index("model").loc["ours", f"nDCG@{k}"]), k, split.checksum)
    return ref
