"""Tests for :mod:`anime_recs.recommend.names`: normalisation and the forgiving name index."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anime_recs.core.errors import DataValidationError, UserInputError
from anime_recs.recommend.names import NameIndex, normalise_name, normalise_names


@pytest.mark.parametrize(
    "raw, key",
    [
        ("Cowboy Bebop", "cowboy bebop"),
        ("  COWBOY   bebop!! ", "cowboy bebop"),
        ("Onegai☆Teacher", "onegai teacher"),
        ("Aishiteruze Baby★★", "aishiteruze baby"),
        ("Love♥Love?", "love love"),
        ("Rozen Maiden: Träumend", "rozen maiden traumend"),
        ("Pokémon", "pokemon"),
        ("Steins;Gate", "steins gate"),
        ("Re:Zero kara Hajimeru Isekai Seikatsu", "re zero kara hajimeru isekai seikatsu"),
        ("ＦＵＬＬ－ＷＩＤＴＨ", "full width"),  # compatibility forms fold to ASCII
        ("Fate/stay night\t[UBW]", "fate stay night ubw"),
        ("☆★♥", ""),
    ],
)
def test_normalise_name(raw: str, key: str) -> None:
    assert normalise_name(raw) == key


def test_normalise_rejects_non_strings() -> None:
    with pytest.raises(UserInputError, match="must be a string"):
        normalise_name(42)  # type: ignore[arg-type]


def test_vectorised_matches_scalar_and_keeps_missing() -> None:
    names = pd.Series(["Onegai☆Teacher", "Café  Lumière", None, "Ｘ-Ｍｅｎ", "ガンダム"], index=[5, 6, 7, 8, 9])
    out = normalise_names(names)
    assert list(out.index) == [5, 6, 7, 8, 9]
    assert pd.isna(out[7])
    for i in (5, 6, 8, 9):
        assert out[i] == normalise_name(names[i])


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "MAL_ID": [1, 2, 3, 4, 5, 6],
            "Name": ["Cowboy Bebop", "Hinamatsuri", "Hinamatsuri", "Shingeki no Kyojin", "Attack", "Steins;Gate"],
            "English name": ["Cowboy Bebop", "Unknown", "Hinamatsuri", "Attack on Titan", "Unknown", "Unknown"],
            "Japanese name": ["カウボーイビバップ", "Unknown", "Unknown", "進撃の巨人", "Unknown", "STEINS;GATE"],
            "Members": [100, 50, 900, 1000, 1, 10],
        }
    )


def test_lookup_forgiving_and_preferences() -> None:
    index = NameIndex(_table())
    assert index.lookup("COWBOY-BEBOP") == 1
    assert index.lookup("カウボーイビバップ") == 1
    assert index.lookup("attack on titan") == 4
    assert index.lookup("steinsgate") == 6  # spaces do not matter as a fallback
    # Two anime called "Hinamatsuri": the more popular one wins.
    assert index.lookup("hinamatsuri") == 3
    # "Attack" is anime 5's Name; a Name match beats any English/Japanese name.
    assert index.lookup("Attack") == 5
    assert "Cowboy Bebop" in index and "Nothing Like It" not in index


def test_lookup_miss_lists_closest_names_on_one_line() -> None:
    index = NameIndex(_table())
    with pytest.raises(UserInputError) as caught:
        index.lookup("cowboy bebpo")
    message = str(caught.value)
    assert message.startswith("no anime named 'cowboy bebpo'; closest matches (MAL_ID): 'Cowboy Bebop' (1)")
    assert "\n" not in message
    with pytest.raises(UserInputError, match="and nothing close"):
        index.lookup("zzqqxx")
    with pytest.raises(UserInputError, match="no letters or digits"):
        index.lookup("☆!")


def test_suggestions_are_distinct_and_capped() -> None:
    index = NameIndex(_table())
    suggestions = index.suggest("hinamatsur", n=5)
    ids = [mal_id for _, mal_id in suggestions]
    assert len(ids) == len(set(ids)) <= 5
    assert set(ids) >= {2, 3}
    assert index.suggest("shingeki", n=1) == [("Shingeki no Kyojin", 4)]


def test_suggestions_forgive_word_order_and_typos_together() -> None:
    index = NameIndex(pd.concat([_table(), pd.DataFrame({"MAL_ID": [205], "Name": ["Samurai Champloo"],
                                                         "English name": ["Samurai Champloo"], "Members": [5]})]))
    assert index.suggest("champloo samurai", n=1) == [("Samurai Champloo", 205)]
    assert index.suggest("bebpo cowboy", n=1) == [("Cowboy Bebop", 1)]
    assert index.suggest("cowbop bebop", n=1) == [("Cowboy Bebop", 1)]


def _regex_word_start_matches(index: NameIndex, query: str) -> list[int]:
    """The word-start rule as a regex over every key (what suggest() did before its sorted index)."""
    key = normalise_name(query)
    hits = index._keys.str.contains(r"(?:^| )" + re.escape(key), regex=True).to_numpy(bool)
    return sorted(np.flatnonzero(hits).tolist())


@pytest.mark.parametrize("query", ["shin", "kyo", "no kyo", "hinamatsuri", "baby", "xyz", "a", "teach"])
def test_word_start_index_finds_what_a_regex_finds(query: str) -> None:
    # Regression: the sorted word-start index must keep the regex's semantics (a match starts a word).
    index = NameIndex(_table())
    assert index._word_start_matches(normalise_name(query)).tolist() == _regex_word_start_matches(index, query)


def test_missing_columns_rejected() -> None:
    with pytest.raises(DataValidationError, match="MAL_ID and Name"):
        NameIndex(pd.DataFrame({"Name": ["x"]}))


def test_real_anime_table(mal_data: Path) -> None:
    anime = pd.read_parquet(mal_data / "anime_2020.parquet").rename(columns={"anime_id": "MAL_ID"})
    # The vectorised and scalar normalisers must agree on every real name.
    assert normalise_names(anime["Name"]).tolist() == [normalise_name(x) for x in anime["Name"]]
    index = NameIndex(anime)
    for query in ["one", "the", "no kyo", "ga", "attack on", "z"]:
        assert index._word_start_matches(normalise_name(query)).tolist() == _regex_word_start_matches(index, query)
    assert index.lookup("cowboy bebop") == 1
    assert index.lookup("ONEGAI TEACHER") == 195
    assert index.lookup("rozen maiden traumend") == 65
    assert index.lookup("your name") == 32281  # English name of Kimi no Na wa.
    with pytest.raises(UserInputError, match="'Shingeki no Kyojin' \\(16498\\)"):
        index.lookup("shingeki no kyojn")
