"""Tests for :mod:`anime_recs.pipeline.plots`: sizes, atomic writes, errors, no figures left open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anime_recs.core.errors import UserInputError
from anime_recs.pipeline.plots import genre_cloud, loss_curve

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference_outputs" / "dyrutter_original"


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_genre_cloud_writes_requested_size(tmp_path: Path) -> None:
    out = genre_cloud(pd.Series({"Action": 9, "Slice of Life": 4, "Sci-Fi": 1}), tmp_path / "genres.png",
                      width=240, height=140)
    assert out == tmp_path / "genres.png"
    assert _pixels(out).shape == (140, 240, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["genres.png"]  # no temporary file left behind


def test_genre_cloud_title_and_background(tmp_path: Path) -> None:
    out = genre_cloud(pd.Series({"Manga": 5, "Original": 2}), tmp_path / "sub" / "sources.png", width=200,
                      height=120, title="Favourite sources", background_color="gray", colormap="autumn")
    pixels = _pixels(out)
    assert pixels.shape == (120, 200, 3)
    assert tuple(pixels[0, 0]) == (128, 128, 128)  # matplotlib's "gray"


def test_genre_cloud_is_deterministic_and_replaces(tmp_path: Path) -> None:
    counts = pd.Series({"Action": 9, "Comedy": 3, "Drama": 2})
    first = _pixels(genre_cloud(counts, tmp_path / "a.png", width=160, height=100))
    target = tmp_path / "b.png"
    target.write_bytes(b"old content")
    second = _pixels(genre_cloud(counts, target, width=160, height=100))
    assert np.array_equal(first, second)


def test_genre_cloud_ignores_non_positive_and_rejects_empty(tmp_path: Path) -> None:
    genre_cloud(pd.Series({"Action": 3, "Drama": 0, "Horror": -1, "Kids": np.nan}), tmp_path / "ok.png",
                width=100, height=60)
    with pytest.raises(UserInputError, match="no positive frequencies"):
        genre_cloud(pd.Series({"Action": 0}, dtype=float), tmp_path / "empty.png")
    with pytest.raises(UserInputError, match="no positive frequencies"):
        genre_cloud(pd.Series(dtype=float), tmp_path / "empty.png")
    with pytest.raises(UserInputError, match="at least 16x16"):
        genre_cloud(pd.Series({"Action": 1}), tmp_path / "tiny.png", width=8, height=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_no_pyplot_figures_left_open(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    genre_cloud(pd.Series({"Action": 2}), tmp_path / "c.png", width=64, height=64)
    loss_curve(pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5]}), tmp_path / "l.png")
    assert plt.get_fignums() == before


def test_loss_curve_from_history(tmp_path: Path) -> None:
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.7, 0.6], "val_loss": [1.1, 0.8, 0.9],
                            "lr": [1e-5, 3e-5, 5e-5]})
    out = loss_curve(history, tmp_path / "loss.png")
    assert _pixels(out).shape[2] == 3 and out.stat().st_size > 5000
    with pytest.raises(UserInputError, match="needs a 'loss' column"):
        loss_curve(pd.DataFrame({"epoch": [0], "val_loss": [1.0]}), tmp_path / "bad.png")
    with pytest.raises(UserInputError, match="needs a 'loss' column"):
        loss_curve(pd.DataFrame({"loss": []}), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_loss_curve_reads_the_originals_history_csv(tmp_path: Path) -> None:
    source = REFERENCE / "anime_nn_history.csv"
    if not source.is_file():
        pytest.skip("reference outputs are not present")
    history = pd.read_csv(source, index_col=0)  # Keras wrote the epoch as an unnamed index
    out = loss_curve(history, tmp_path / "history.svg")
    assert out.read_text().lstrip().startswith("<?xml")  # the suffix chooses the format
