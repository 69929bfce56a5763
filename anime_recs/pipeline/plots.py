"""Figures the pipeline logs: favourite-genre/source word clouds and the training loss curve.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas,
never through ``pyplot``: nothing is ever shown, no global figure state leaks
between calls, and the module works on headless machines whatever backend the
caller configured. Every file is written atomically (a temporary name in the
target folder, then :func:`os.replace`), so a crash never leaves half a PNG
where a later step or the artifact store would pick it up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from anime_recs.core.errors import UserInputError
from anime_recs.core.io import atomic_write

logger = logging.getLogger(__name__)

_DPI = 100
_TITLE_BAND = 0.12  # share of the height kept for a title


def _save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(figure)
    fmt = (Path(path).suffix.lstrip(".") or "png").lower()  # the temp name has no meaningful suffix
    return atomic_write(path, lambda temp: figure.savefig(temp, format=fmt, dpi=_DPI))


def genre_cloud(
    frequencies: pd.Series,
    path: str | os.PathLike[str],
    width: int = 600,
    height: int = 350,
    title: str | None = None,
    *,
    background_color: str = "white",
    colormap: str = "spring",
    random_state: int = 0,
) -> Path:
    """Draw a word cloud where each word's size follows its frequency.

    Used for a user's favourite genres and sources (step 6 and 7); the original's
    colours were ``spring`` on white for genres and ``autumn`` on gray for sources.

    Args:
        frequencies: Word -> count (e.g. :attr:`UserPreferences.genres`); zero,
            negative and missing counts are ignored.
        path: Output image (format from the suffix, PNG by default).
        width: Image width in pixels.
        height: Image height in pixels (the title, if any, is drawn inside it).
        title: Optional heading above the cloud.
        background_color: Background colour.
        colormap: Matplotlib colormap for the words.
        random_state: Layout seed, so the same input gives the same picture.

    Returns:
        The written path.

    Raises:
        UserInputError: nothing to draw, or a size below 16 pixels.
    """
    from wordcloud import WordCloud  # imported here: it pulls in PIL font machinery

    if int(width) < 16 or int(height) < 16:
        raise UserInputError(f"word cloud size must be at least 16x16 pixels, got {width}x{height}")
    counts = pd.to_numeric(pd.Series(frequencies), errors="coerce")
    counts = counts[np.isfinite(counts) & (counts > 0)]
    if counts.empty:
        raise UserInputError(
            f"nothing to draw in {Path(path).name}: no positive frequencies (does the user have favourites?)"
        )
    cloud_height = int(height * (1 - _TITLE_BAND)) if title else int(height)
    cloud = WordCloud(
        width=int(width),
        height=cloud_height,
        prefer_horizontal=0.85,
        background_color=background_color,
        colormap=colormap,
        random_state=random_state,
    ).generate_from_frequencies({str(k): float(v) for k, v in counts.items()})

    figure = Figure(figsize=(int(width) / _DPI, int(height) / _DPI), dpi=_DPI, facecolor=background_color)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0 - _TITLE_BAND if title else 1.0))
    axes.imshow(cloud.to_array(), interpolation="bilinear", aspect="auto")
    axes.set_axis_off()
    if title:
        figure.text(0.5, 1.0 - _TITLE_BAND / 2, title, ha="center", va="center", fontsize=12)
    written = _save_figure(figure, path)
    logger.info("wrote word cloud of %d words to %s", len(counts), written)
    return written


def loss_curve(history: pd.DataFrame, path: str | os.PathLike[str], title: str = "Model loss") -> Path:
    """Plot training and validation loss per epoch (and the learning rate, if logged).

    Args:
        history: Training history with ``loss`` and optionally ``val_loss``, ``lr`` and
            ``epoch`` (without ``epoch`` the row order is the epoch, as in the
            original's Keras history CSV).
        path: Output image.
        title: Figure title.

    Returns:
        The written path.

    Raises:
        UserInputError: no ``loss`` column or no rows.
    """
    if "loss" not in history.columns or history.empty:
        raise UserInputError(
            f"history needs a 'loss' column and at least one row, has columns {list(history.columns)}"
        )
    epochs = history["epoch"].to_numpy() if "epoch" in history.columns else np.arange(len(history))
    figure = Figure(figsize=(7, 4.5), dpi=_DPI)
    axes = figure.add_subplot()
    axes.plot(epochs, history["loss"].to_numpy(float), marker="o", label="loss")
    if "val_loss" in history.columns:
        val = history["val_loss"].to_numpy(float)
        axes.plot(epochs, val, marker="o", label="val_loss")
        if np.isfinite(val).any():
            best = int(np.nanargmin(val))
            axes.scatter([epochs[best]], [val[best]], s=120, facecolors="none", edgecolors="red", zorder=3,
                         label=f"best val_loss {val[best]:.4g} (epoch {epochs[best]})")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if "lr" in history.columns:
        # The schedule explains the curve's shape (ramp-up, decay), so show it alongside.
        lr_axes = axes.twinx()
        lr_axes.plot(epochs, history["lr"].to_numpy(float), color="gray", linestyle="--", label="lr")
        lr_axes.set_ylabel("learning rate")
        lines, labels = axes.get_legend_handles_labels()
        lr_lines, lr_labels = lr_axes.get_legend_handles_labels()
        axes.legend(lines + lr_lines, labels + lr_labels, loc="upper right")
    else:
        axes.legend(loc="upper right")
    figure.tight_layout()
    written = _save_figure(figure, path)
    logger.info("wrote loss curve of %d epochs to %s", len(history), written)
    return written
