"""Checkpoints survive a kill mid-line; the user-name map is stable and private."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.data.mal.checkpoint import JsonlLog, UserIds, read_user_names


def test_a_line_cut_by_a_kill_is_dropped_and_appending_continues(tmp_path: Path) -> None:
    path = tmp_path / "anime.jsonl"
    log = JsonlLog(path, "id")
    log.append({"id": 1, "status": "ok"})
    log.append({"id": 2, "status": "ok"})
    with open(path, "a") as handle:  # what kill -9 in the middle of a write leaves
        handle.write('{"id": 3, "sta')
    reopened = JsonlLog(path, "id")
    assert sorted(reopened.records) == [1, 2] and 3 not in reopened
    reopened.append({"id": 3, "status": "ok"})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, 2, 3]
    path.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(UserInputError, match="line 2 is damaged"):
        JsonlLog(path, "id")


def test_user_ids_are_stable_case_insensitive_and_private(tmp_path: Path) -> None:
    names_file = tmp_path / "names.txt"
    names_file.write_text("Alice\n# a comment\n\nbob  # trailing comment\nALICE\n")
    assert read_user_names(names_file) == ["Alice", "bob"]
    ids = UserIds(tmp_path / "private" / "user_ids.json")
    assert ids.assign(["Alice", "bob"]) == {"Alice": 0, "bob": 1}
    again = UserIds(tmp_path / "private" / "user_ids.json")
    assert again.assign(["carol", "BOB", "alice"]) == {"carol": 2, "BOB": 1, "alice": 0}
    assert (tmp_path / "private" / "user_ids.json").stat().st_mode & 0o077 == 0
    (tmp_path / "private" / "user_ids.json").write_text("[1, 2")
    with pytest.raises(UserInputError, match="user id map .* is damaged"):
        UserIds(tmp_path / "private" / "user_ids.json")
    with pytest.raises(UserInputError, match="does not exist"):
        read_user_names(tmp_path / "missing.txt")
