"""Our recommenders against standard peers, side by side, under the evaluation protocol.

Runs :func:`anime_recs.evaluation.protocol_split` on MyAnimeList (the 100k-row head
of ``rating_complete.csv``) and MovieLens ``ml-latest-small``, fits every model on
TRAIN in this one process and prints one markdown table per data set (RMSE, MAE,
P/R/nDCG/MAP/Coverage@10, fit and evaluation seconds, the process's peak RSS
while each model ran and how much of it the model added) with the TEST checksum.
Timings are only comparable within one run.

Models:

- ``ours``: the pipeline's default model family exactly as configured (``config/model/hybrid.yaml``:
  EASE ranks, the neighbourhood blend predicts ratings), through
  :class:`~anime_recs.evaluation.FamilyModel`, i.e. the object the steps serve;
  ``--ours-params`` overrides options (dotted keys for nested groups).
- ``ours-ease``, ``ours-neighbourhood``: the two halves of the hybrid alone (``model=ease``,
  ``model=neighbourhood``).
- ``ours-similar-users``: the ``user_recs`` ranking (votes of the 10 most similar users'
  favourites) over the fitted ``ours``, exactly as the step serves it.
- ``ours-original-architecture``: ``model=original``, the original project's network as the
  pipeline trains it with that override.
- ``GlobalMean``, ``Popularity``, ``UserItemBias``: our baselines.
- ``BaselineOnly``, ``SVD`` (defaults, ``random_state=0``), ``KNNBaseline``
  (item-based, ``pearson_baseline``): Surprise (``pip install scikit-surprise``).
- ``ALS`` (64 factors, regularization 0.05, 15 iterations), ``BPR`` (64 factors,
  100 iterations): implicit (``pip install implicit``), trained on the binary
  "relevant" matrix (TRAIN rating >= the data set's relevance threshold); they
  rank but do not predict ratings, so their RMSE/MAE are blank.
- ``EASE`` (Steck 2019): ``B = I - P diag(1/diag(P))``, ``P = (XᵀX + λI)⁻¹`` on the binary
  "relevant" matrix, λ chosen from ``EASE_L2_GRID`` on a validation split of TRAIN.
- ``iALS-tuned``: implicit ALS with factors, regularization and alpha chosen from
  ``IALS_GRID`` (64 settings) on the same validation split (Rendle et al. 2021 on tuning iALS).

Every choice a peer makes is made on :func:`~anime_recs.evaluation.validation_split`
(the protocol applied again inside TRAIN), never on TEST.

Surprise and implicit predict one pair at a time in Python; here their fitted
parameters are used in vectorised form instead, checked against the libraries' own
``predict`` on a sample of pairs (the largest difference is logged).

Example::

    python bench/peers.py --json bench/results/peers.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

from anime_recs.core.config import make_parser, setup_logging
from anime_recs.evaluation.datasets import DATASETS, BenchData, default_data_dir, pipeline_model_config
from anime_recs.core.encoding import IdEncoder
from anime_recs.core.errors import UserInputError
from anime_recs.evaluation import (
    DEFAULT_COLUMNS,
    Columns,
    FamilyModel,
    GlobalMean,
    Popularity,
    Recommender,
    Split,
    UserItemBias,
    evaluate_models,
    protocol_split,
    ranking_metrics,
    to_markdown,
    validation_split,
)

logger = logging.getLogger("bench.peers")

# Grids the tuned peers choose from on the validation split of TRAIN.
EASE_L2_GRID = (50.0, 100.0, 200.0, 400.0, 800.0)
# Earlier, narrower grids chose their corners (strongest regularisation, smallest alpha), so this one reaches
# well past them; Rendle et al. (2021) find that iALS needs strong regularisation and enough factors.
IALS_GRID = tuple(
    {"factors": f, "regularization": r, "alpha": a}
    for f in (32, 64, 128, 256) for r in (10.0, 20.0, 40.0, 80.0) for a in (2.0, 4.0, 8.0, 16.0)
)
# Ours run last: importing TensorFlow adds ~0.8 GB to the process, which would
# otherwise inflate every later model's absolute peak RSS on the first data set.
ALL_MODELS = (
    "GlobalMean", "Popularity", "UserItemBias", "BaselineOnly", "SVD", "KNNBaseline", "ALS", "BPR", "EASE", "iALS-tuned",
    "ours", "ours-similar-users", "ours-ease", "ours-neighbourhood", "ours-original-architecture",
)  # fmt: skip
OURS_FAMILIES = {"ours": None, "ours-ease": "ease", "ours-neighbourhood": "neighbourhood", "ours-original-architecture": "original"}


# --------------------------------------------------------------------------- peers


class _Tables:
    """Raw ids -> padded parameter rows: unknown ids land on a trailing zero row."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
        self.users = IdEncoder(user_ids, kind="user")
        self.items = IdEncoder(item_ids, kind="item")
        # Inner (library) index of the row of each sorted raw id.
        self.user_order = np.argsort(np.asarray(user_ids, dtype=np.int64), kind="stable")
        self.item_order = np.argsort(np.asarray(item_ids, dtype=np.int64), kind="stable")

    @staticmethod
    def pad(table: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Rows reordered to sorted raw id, plus a zero row at the end (index -1)."""
        table = np.asarray(table, dtype=np.float64)[order]
        return np.concatenate([table, np.zeros((1,) + table.shape[1:])])

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        return self.users.transform(np.asarray(users, dtype=np.int64), missing="minus_one")

    def item_rows(self, items: np.ndarray) -> np.ndarray:
        return self.items.transform(np.asarray(items, dtype=np.int64), missing="minus_one")


class SurprisePeer:
    """A Surprise algorithm (BaselineOnly, SVD or item-based KNNBaseline) behind :class:`Recommender`.

    Args:
        kind: ``"BaselineOnly"``, ``"SVD"`` or ``"KNNBaseline"``.
        rating_bounds: The data's rating scale (Surprise's ``Reader(rating_scale=...)``).
        check_pairs: Pairs of TRAIN users x items compared with Surprise's own ``predict``.
    """

    predicts_ratings = True

    def __init__(self, kind: str, rating_bounds: tuple[float, float], check_pairs: int = 300) -> None:
        import surprise  # noqa: F401  (fail at construction, before any fitting)

        self.kind = kind
        self.rating_bounds = rating_bounds
        self.check_pairs = check_pairs

    def _algo(self) -> Any:
        from surprise import SVD, BaselineOnly, KNNBaseline

        if self.kind == "BaselineOnly":
            return BaselineOnly(verbose=False)
        if self.kind == "SVD":
            return SVD(random_state=0)
        if self.kind == "KNNBaseline":
            return KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False)
        raise UserInputError(f"unknown Surprise algorithm {self.kind!r}; choose BaselineOnly, SVD or KNNBaseline")

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> SurprisePeer:
        """Fit the Surprise algorithm on TRAIN and cache its parameters as arrays."""
        from surprise import Dataset, Reader

        frame = train[[cols.user, cols.item, cols.rating]]
        trainset = Dataset.load_from_df(frame, Reader(rating_scale=self.rating_bounds)).build_full_trainset()
        self.algo = self._algo().fit(trainset)
        self.trainset = trainset
        raw_users = np.array([trainset.to_raw_uid(u) for u in trainset.all_users()], dtype=np.int64)
        raw_items = np.array([trainset.to_raw_iid(i) for i in trainset.all_items()], dtype=np.int64)
        self.tables = _Tables(raw_users, raw_items)
        t = self.tables
        self.mu = float(trainset.global_mean)
        self.bu = t.pad(self.algo.bu, t.user_order)
        self.bi = t.pad(self.algo.bi, t.item_order)
        if self.kind == "SVD":
            self.pu = t.pad(self.algo.pu, t.user_order)
            self.qi = t.pad(self.algo.qi, t.item_order)
        if self.kind == "KNNBaseline":
            # Indexed through the inner ids rather than reordered: no second n_items^2 copy.
            self.sim = np.asarray(self.algo.sim)
            self.item_inner = t.item_order
            # Each user's TRAIN items (sorted-id rows) and baseline residuals r - mu - b_u - b_i.
            u_rows = t.user_rows(frame[cols.user].to_numpy())
            i_rows = t.item_rows(frame[cols.item].to_numpy())
            order = np.argsort(u_rows, kind="stable")
            self.rated_items = i_rows[order]
            self.residuals = (
                frame[cols.rating].to_numpy(dtype=np.float64)[order]
                - self.mu
                - self.bu[u_rows[order]]
                - self.bi[self.rated_items]
            )
            self.rated_start = np.searchsorted(u_rows[order], np.arange(len(t.users) + 1))
        self._check(frame, cols)
        return self

    def _knn_offsets(self, user_row: int, item_rows: np.ndarray) -> np.ndarray:
        """Surprise's neighbourhood term for one user and many items (0 where it has none).

        Neighbours are the ``k`` items the user rated with the highest similarity to
        the target; only positive similarities count (Surprise takes the ``k``
        largest, then skips non-positive ones, which selects the same set).
        """
        lo, hi = self.rated_start[user_row], self.rated_start[user_row + 1]
        rated, resid = self.rated_items[lo:hi], self.residuals[lo:hi]
        sims = self.sim[np.ix_(self.item_inner[item_rows], self.item_inner[rated])]
        k = self.algo.k
        if rated.size > k:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            sims = np.take_along_axis(sims, top, axis=1)
            resid = resid[top]
        else:
            resid = np.broadcast_to(resid, sims.shape)
        positive = np.where(sims > 0, sims, 0.0)
        weight = positive.sum(axis=1)
        enough = (sims > 0).sum(axis=1) >= self.algo.min_k
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = (positive * resid).sum(axis=1) / weight
        return np.where(enough & (weight > 0), offset, 0.0)

    def _estimate_rows(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Unclipped estimates for an outer product of padded rows (users x items)."""
        est = self.mu + self.bu[user_rows][:, None] + self.bi[item_rows][None, :]
        if self.kind == "SVD":
            est = est + self.pu[user_rows] @ self.qi[item_rows].T
        if self.kind == "KNNBaseline":
            known_items = item_rows >= 0
            for j, u in enumerate(user_rows.tolist()):  # one user at a time bounds memory
                if u >= 0 and known_items.any():
                    est[j, known_items] += self._knn_offsets(u, item_rows[known_items])
        return est

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Surprise's estimate for each pair (clipped to the rating scale, as Surprise does)."""
        u_rows = self.tables.user_rows(users)
        i_rows = self.tables.item_rows(items)
        if self.kind != "KNNBaseline":
            out = self.mu + self.bu[u_rows] + self.bi[i_rows]
            if self.kind == "SVD":
                out = out + np.einsum("ij,ij->i", self.pu[u_rows], self.qi[i_rows])
            return np.clip(out, *self.rating_bounds)
        out = np.empty(u_rows.shape, dtype=np.float64)
        # Group pairs by user so each user's neighbourhood is gathered once.
        order = np.argsort(u_rows, kind="stable")
        bounds = np.flatnonzero(np.diff(u_rows[order])) + 1
        for group in np.split(order, bounds):
            out[group] = self._estimate_rows(u_rows[group[:1]], i_rows[group])[0]
        return np.clip(out, *self.rating_bounds)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Unclipped estimates: clipping would tie every item predicted above the scale's top."""
        return self._estimate_rows(self.tables.user_rows(users), self.tables.item_rows(items))

    def _check(self, frame: pd.DataFrame, cols: Columns) -> None:
        """Compare the vectorised estimates with Surprise's ``predict`` on random pairs."""
        rng = np.random.default_rng(0)
        users = rng.choice(frame[cols.user].to_numpy(), self.check_pairs)
        items = rng.choice(frame[cols.item].to_numpy(), self.check_pairs)
        ours = self.predict(users, items)
        theirs = np.array([self.algo.predict(u, i).est for u, i in zip(users.tolist(), items.tolist())])
        diff = float(np.max(np.abs(ours - theirs)))
        log = logger.warning if diff > 1e-6 else logger.info
        log("%s: vectorised vs Surprise predict on %d pairs: max |diff| = %.2g", self.kind, self.check_pairs, diff)


class ImplicitPeer:
    """An implicit-feedback model (implicit ``ALS`` or ``BPR``) on the binary "relevant" matrix.

    Args:
        kind: ``"ALS"`` or ``"BPR"``.
        relevant_threshold: TRAIN ratings at or above it become 1, the rest 0.
    """

    predicts_ratings = False

    def __init__(self, kind: str, relevant_threshold: float, params: dict[str, Any] | None = None) -> None:
        import implicit  # noqa: F401  (fail at construction, before any fitting)

        if kind not in ("ALS", "BPR"):
            raise UserInputError(f"unknown implicit model {kind!r}; choose ALS or BPR")
        self.kind = kind
        self.relevant_threshold = relevant_threshold
        self.params = params or ({"factors": 64, "regularization": 0.05} if kind == "ALS" else {"factors": 64})

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> ImplicitPeer:
        """Build the users x items 0/1 matrix and factorise it."""
        import scipy.sparse as sp
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        users = train[cols.user].to_numpy(dtype=np.int64)
        items = train[cols.item].to_numpy(dtype=np.int64)
        self.tables = _Tables(np.unique(users), np.unique(items))
        liked = train[cols.rating].to_numpy(dtype=np.float64) >= self.relevant_threshold
        matrix = sp.csr_matrix(
            (
                np.ones(int(liked.sum()), dtype=np.float32),
                (self.tables.user_rows(users[liked]), self.tables.item_rows(items[liked])),
            ),
            shape=(len(self.tables.users), len(self.tables.items)),
        )
        # implicit asks for single-threaded BLAS (its own threads already use the cores)
        # and checks it when the model is built.
        with threadpool_limits(1, "blas"):
            if self.kind == "ALS":
                model = AlternatingLeastSquares(**self.params, iterations=15, random_state=0)
            else:
                # One thread: multi-threaded BPR SGD is not reproducible run to run.
                model = BayesianPersonalizedRanking(**self.params, iterations=100, random_state=0, num_threads=1)
            model.fit(matrix, show_progress=False)
        self.user_factors = _Tables.pad(model.user_factors, np.arange(matrix.shape[0]))
        self.item_factors = _Tables.pad(model.item_factors, np.arange(matrix.shape[1]))
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Not a rating model."""
        raise NotImplementedError(f"implicit {self.kind} ranks items but does not predict ratings")

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dot products of user and item factors (zero for ids unseen in TRAIN)."""
        return self.user_factors[self.tables.user_rows(users)] @ self.item_factors[self.tables.item_rows(items)].T


class EasePeer:
    """EASE (Steck 2019) on the binary "relevant" matrix, exactly as published.

    Args:
        relevant_threshold: TRAIN ratings at or above it become 1, the rest 0.
        l2: The ridge λ.
    """

    predicts_ratings = False

    def __init__(self, relevant_threshold: float, l2: float) -> None:
        self.relevant_threshold = relevant_threshold
        self.l2 = l2

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> EasePeer:
        """``B = I - P diag(1/diag(P))`` with ``P = (XᵀX + λI)⁻¹``."""
        import scipy.sparse as sp

        from anime_recs.models.linalg import inverse_spd

        users = train[cols.user].to_numpy(dtype=np.int64)
        items = train[cols.item].to_numpy(dtype=np.int64)
        self.tables = _Tables(np.unique(users), np.unique(items))
        liked = train[cols.rating].to_numpy(dtype=np.float64) >= self.relevant_threshold
        self.X = sp.csr_matrix(
            (np.ones(int(liked.sum())), (self.tables.user_rows(users[liked]), self.tables.item_rows(items[liked]))),
            shape=(len(self.tables.users), len(self.tables.items)),
        )
        gram = (self.X.T @ self.X).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        P = inverse_spd(gram)
        self.B = (-P / np.diag(P)).astype(np.float32)
        np.fill_diagonal(self.B, 0.0)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Not a rating model."""
        raise NotImplementedError("EASE ranks items but does not predict ratings")

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``x_u B`` (zero rows for users unseen in TRAIN)."""
        rows = self.tables.user_rows(users)
        scores = np.zeros((len(users), self.B.shape[1]), np.float32)
        known = rows >= 0
        scores[known] = self.X[rows[known]] @ self.B
        cols = self.tables.item_rows(items)
        return np.where(cols >= 0, scores[:, np.maximum(cols, 0)], 0.0)


class TunedPeer:
    """Chooses a peer's settings on the validation split of TRAIN (nDCG@10), then refits on all of TRAIN.

    Args:
        make: Settings -> unfitted peer.
        grid: The settings to try.
        data: The data set (for the relevance threshold).
    """

    predicts_ratings = False

    def __init__(self, make: Callable[[Any], Recommender], grid: tuple[Any, ...], data: BenchData) -> None:
        self.make, self.grid, self.data = make, grid, data
        self.chosen: Any = None
        self.trials: list[dict[str, Any]] = []

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> TunedPeer:
        """Try every setting on the validation split, keep the best, refit."""
        inner = validation_split(Split(train, train.iloc[:0], "", cols))
        best = -1.0
        for setting in self.grid:
            ndcg = ranking_metrics(self.make(setting).fit(inner.train, cols).score, inner, self.data.relevant_threshold)["ndcg"]
            self.trials.append({"setting": setting, "val_ndcg": ndcg})
            logger.info("  %s: validation nDCG@10 %.4f", setting, ndcg)
            if ndcg > best:
                best, self.chosen = ndcg, setting
        self.model = self.make(self.chosen).fit(train, cols)
        logger.info("chose %s (validation nDCG@10 %.4f)", self.chosen, best)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Not a rating model."""
        raise NotImplementedError("tuned ranking peers do not predict ratings")

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The refitted peer's scores."""
        return self.model.score(users, items)


def build_model(name: str, data: BenchData, ours_params: dict[str, Any], fitted: dict[str, Recommender]) -> Recommender | None:
    """A fresh, unfitted model, or None (with a logged reason) when its package is missing.

    ``fitted`` holds the models already evaluated on this data set (``ours-similar-users`` reuses ``ours``).
    """
    from anime_recs.evaluation import FamilyModel, SimilarUsersModel
    from anime_recs.models import build_model as build_family

    try:
        if name in OURS_FAMILIES:
            config = pipeline_model_config(OURS_FAMILIES[name], ours_params if name == "ours" else None)
            return FamilyModel(build_family(config), rating_range=data.rating_bounds)
        if name == "ours-similar-users":
            ours = fitted.get("ours") or FamilyModel(build_family(pipeline_model_config(None, ours_params)), data.rating_bounds)
            return SimilarUsersModel(ours)  # type: ignore[arg-type]
        if name == "GlobalMean":
            return GlobalMean()
        if name == "Popularity":
            return Popularity(relevant_threshold=data.relevant_threshold)
        if name == "UserItemBias":
            return UserItemBias()
        if name in ("BaselineOnly", "SVD", "KNNBaseline"):
            return SurprisePeer(name, data.rating_bounds)
        if name in ("ALS", "BPR"):
            return ImplicitPeer(name, data.relevant_threshold)
        if name == "EASE":
            return TunedPeer(lambda l2: EasePeer(data.relevant_threshold, l2), EASE_L2_GRID, data)
        if name == "iALS-tuned":
            return TunedPeer(lambda params: ImplicitPeer("ALS", data.relevant_threshold, params), IALS_GRID, data)
    except ImportError as exc:
        package = {"ours-original-architecture": "tensorflow", "ALS": "implicit", "BPR": "implicit", "iALS-tuned": "implicit"}.get(
            name, "scikit-surprise"
        )
        logger.warning("skipping %s: cannot import it (%s); pip install %s, or the project's [bench] extra", name, exc, package)
        return None
    raise UserInputError(f"unknown model {name!r}; choose from {', '.join(ALL_MODELS)}")


# --------------------------------------------------------------------------- running


def run_dataset(
    key: str, data_dir: Path, models: list[str], ours_params: dict[str, Any]
) -> tuple[Split, pd.DataFrame, dict[str, dict[str, Any]]]:
    """Split one data set and evaluate the requested models on it, one model at a time.

    Returns:
        The split, the results table, and per-model notes (what our families learned,
        the settings the tuned peers chose).
    """
    data = DATASETS[key]
    split = protocol_split(data.load(data_dir), data.cols.user, data.cols.item, data.cols.rating, min_rating=data.min_rating)
    logger.info("%s split: %s", key, split.describe())
    tables = []
    notes: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Recommender] = {}
    for name in models:
        model = build_model(name, data, ours_params, fitted)
        if model is None:
            notes[name] = {"skipped": "package not installed"}
            continue
        tables.append(evaluate_models({name: model}, split, data.relevant_threshold, data.rating_bounds))
        if isinstance(model, FamilyModel):
            notes[name] = {"family": model.model.family, "fit": model.model.fit_info}
        if isinstance(model, TunedPeer):
            notes[name] = {"chosen": model.chosen, "trials": model.trials}
        if name == "ours":
            fitted[name] = model  # ours-similar-users ranks with this fitted model
        del model  # free the fitted model before the next one is measured
    return split, pd.concat(tables) if tables else pd.DataFrame(), notes


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary sibling, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2, allow_nan=True)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)  # NamedTemporaryFile is private (0600); give the usual mode
    os.replace(handle.name, path)


def _json_object(text: str) -> dict[str, Any]:
    """Parse an option value that must be a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"batch_size\": 1000}}', got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="folder holding mal2020/ and movielens/"
    )
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS), help="data sets to run")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=ALL_MODELS,
        default=list(ALL_MODELS),
        help="models to run (peers whose package is missing are skipped)",
    )
    parser.add_argument(
        "--ours-params",
        type=_json_object,
        default={},
        help='JSON object of model options overriding the defaults of "ours" (dotted keys for nested groups), e.g. \'{"ranking.l2_per_count": 40}\'',
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--log-level", default="INFO", help="logging level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; returns the exit code."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    start = time.perf_counter()
    payload: dict[str, Any] = {"command": " ".join(sys.argv), "datasets": {}}
    try:
        for key in args.datasets:
            split, table, notes = run_dataset(key, args.data_dir, args.models, args.ours_params)
            print(f"\n### {DATASETS[key].title}\n")
            stats = split.describe()
            print(
                f"TEST checksum `{split.checksum}`; {stats['users']} users, {stats['train_rows']} train / "
                f"{stats['test_rows']} test rows, {stats['train_items']} train items, "
                f"{stats['test_only_items']} test rows on items absent from train\n"
            )
            print(to_markdown(table))
            for name, note in notes.items():
                if "skipped" in note:
                    print(f"{name}: skipped ({note['skipped']})")
                elif "chosen" in note:
                    print(f"{name}: chose {note['chosen']} on the validation split of TRAIN")
                else:
                    print(f"{name}: {note['family']} {note['fit']}")
            sys.stdout.flush()
            payload["datasets"][key] = {
                "title": DATASETS[key].title,
                "split": stats,
                "results": json.loads(table.to_json(orient="index")),
                "training": notes,
            }
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    payload["elapsed_s"] = elapsed
    print(f"total {elapsed:.0f} s")
    if args.json is not None:
        write_json_atomic(args.json, payload)
        logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
