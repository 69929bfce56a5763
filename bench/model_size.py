"""How big a saved model version is, and what storing its item x item matrices as float16 changes in its answers.

For each shared data set: the protocol split, the default family fitted on TRAIN, saved twice (every
array at float32, and as the pipeline saves it: item x item matrices at float16), both loaded back.
Prints one row per data set: folder sizes, the share of top-10 lists that are identical, the mean
top-10 overlap, and RMSE on TEST and the largest predicted-rating difference of both copies.

    python bench/model_size.py [--data-dir ../shared/data] [--datasets mal,movielens]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anime_recs.evaluation import protocol_split  # noqa: E402
from anime_recs.evaluation.datasets import DATASETS, default_data_dir, pipeline_model_config  # noqa: E402
from anime_recs.models import Interactions, build_model, load_model  # noqa: E402
from anime_recs.models import base  # noqa: E402


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in ``folder``."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def top10(model: object, train: Interactions, users: np.ndarray) -> np.ndarray:
    """Each user's ten best-ranked anime they have not rated."""
    scores = np.asarray(model.rank_scores(users), dtype=np.float64)  # type: ignore[attr-defined]
    seen = train.matrix()[users].tocoo()
    scores[seen.row, seen.col] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


def measure(key: str, data_dir: Path) -> dict[str, object]:
    """Fit, save both ways, compare."""
    spec = DATASETS[key]
    frame = spec.load(data_dir)
    split = protocol_split(frame.rename(columns={spec.cols.user: "user_id", spec.cols.item: "anime_id", spec.cols.rating: "rating"}),
                           min_rating=spec.min_rating)
    train = Interactions.from_frame(split.train, spec.rating_bounds)
    model = build_model(pipeline_model_config()).fit(train)
    with tempfile.TemporaryDirectory() as tmp:
        full, half = Path(tmp) / "float32", Path(tmp) / "float16"
        threshold = base.HALF_PRECISION_MIN_ITEMS
        base.HALF_PRECISION_MIN_ITEMS = 1 << 62  # nothing is item x item enough: every array at float32
        model.save(full)
        base.HALF_PRECISION_MIN_ITEMS = threshold
        model.save(half)
        a, b = load_model(full), load_model(half)
        test = split.test[split.test["user_id"].isin(train.users.ids) & split.test["anime_id"].isin(train.items.ids)]
        users = train.users.transform(test["user_id"].to_numpy())
        items = train.items.transform(test["anime_id"].to_numpy())
        pa, pb = a.predict(users, items), b.predict(users, items)
        rows = np.unique(users)
        ta, tb = top10(a, train, rows), top10(b, train, rows)
        overlap = np.array([len(np.intersect1d(x, y)) for x, y in zip(ta, tb)]) / 10.0
        truth = test["rating"].to_numpy()
        return {
            "data": key, "anime": len(train.items), "users": len(train.users),
            "float32_mb": round(folder_bytes(full) / 1e6, 2), "stored_mb": round(folder_bytes(half) / 1e6, 2),
            "identical_top10": round(float((ta == tb).all(axis=1).mean()), 4), "mean_top10_overlap": round(float(overlap.mean()), 4),
            "rmse_float32": round(float(np.sqrt(np.mean((pa - truth) ** 2))), 5),
            "rmse_stored": round(float(np.sqrt(np.mean((pb - truth) ** 2))), 5),
            "max_rating_diff": float(np.abs(pa - pb).max()),
        }


def main(argv: list[str] | None = None) -> None:
    """Print a markdown table and a JSON line per data set."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the shared data folder")
    parser.add_argument("--datasets", default="mal,movielens", help="comma-separated: mal, movielens")
    args = parser.parse_args(argv)
    rows = [measure(key.strip(), args.data_dir) for key in args.datasets.split(",") if key.strip()]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
