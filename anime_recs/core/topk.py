"""The one top-k selection every recommender, the evaluation and the server use.

Ties always go to the lower position (rows and columns are ids in ascending
order, so to the lower id), which makes every ranking reproducible. Selection
is linear time (``np.partition``) followed by a sort of the few survivors.
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` best scores, best first.

    Args:
        scores: One score per position (1-D), or one row of scores per query (2-D).
        k: How many to keep.
        mask: Candidate positions (same shape as ``scores``); None = every position
            whose score is not ``-inf``.

    Returns:
        1-D input: int64 positions, at most ``k`` (fewer when fewer qualify).
        2-D input: ``(n_rows, k)`` int64 positions, rows with fewer than ``k``
        candidates padded with ``-1`` at the end.
    """
    if scores.ndim == 2:
        return _top_k_rows(scores, np.isfinite(scores) | (scores > 0) if mask is None else mask, k)
    if mask is None:
        # The 325k-user path: no candidate copy, a partition of the scores themselves.
        kk = min(k, len(scores) - int(np.count_nonzero(scores == -np.inf)))
        if kk <= 0:
            return np.empty(0, np.int64)
        kth = np.partition(scores, len(scores) - kk)[len(scores) - kk]
        top = np.flatnonzero(scores >= kth)
        return top[np.lexsort((top, -scores[top]))][:kk]
    candidates = np.flatnonzero(mask)
    kk = min(k, len(candidates))
    if kk <= 0:
        return candidates[:0].astype(np.int64)
    values = scores[candidates]
    if kk < len(candidates):
        # Keep everything tied with the k-th best value so ties at the cut are broken by position.
        kth = np.partition(values, len(values) - kk)[len(values) - kk]
        keep = np.flatnonzero(values >= kth)
        candidates, values = candidates[keep], values[keep]
    return candidates[np.lexsort((candidates, -values))][:kk].astype(np.int64)


def _top_k_rows(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Row-wise :func:`top_k` without a Python loop over rows (a cumulative count settles ties)."""
    n_rows, n_cols = scores.shape
    out = np.full((n_rows, k), -1, dtype=np.int64)
    kk = min(k, n_cols)
    if n_rows == 0 or kk == 0:
        return out
    masked = np.where(candidates, scores, -np.inf)
    kth = np.partition(masked, n_cols - kk, axis=1)[:, n_cols - kk : n_cols - kk + 1]
    above = candidates & (masked > kth)
    tied = candidates & (masked == kth)
    quota = kk - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= quota))
    rows, cols = np.nonzero(chosen)  # row-major: columns ascending within a row
    per_row = np.bincount(rows, minlength=n_rows)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    top_scores = np.full((n_rows, k), -np.inf)
    out[rows, slot] = cols
    top_scores[rows, slot] = masked[rows, cols]
    # Stable: equal scores keep ascending column order, and -1 padding stays last.
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(out, order, axis=1)
