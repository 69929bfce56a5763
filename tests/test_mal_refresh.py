"""The resumable refresh against the fake API: outputs, skips, stable ids, kill -9 and Ctrl-C, secrecy, the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from anime_recs.data.files import load_anime, load_stats, load_synopses
from anime_recs.data.mal.client import MalClient, RetryPolicy
from anime_recs.data.mal.refresh import Refresh, RefreshOptions, seasons_between
from tests.conftest import child_env
from tests.mal_fake import World, api_root, files_containing, sample_world, serve

SECRET = "mal-5ecret-c1ient-9d2e"
FAST = RetryPolicy(max_retries=3, backoff=0.05)


@pytest.fixture()
def world() -> Iterator[World]:
    w = sample_world(SECRET, n_users=8, n_anime=12, mean_items=6)
    w.fake.users["hidden"] = []
    w.fake.private.add("hidden")
    with serve(w.fake):
        yield w


def run_refresh(world: World, out: Path, names: list[str], **options) -> Refresh:
    client = MalClient(SECRET, api_root(world.fake), rate=200, timeout=5, retry=FAST)
    refresh = Refresh(client, RefreshOptions(out=out, user_names=tuple(names), progress=False, **options))
    refresh.run()
    return refresh


def counts(refresh: Refresh) -> dict[str, dict[str, int]]:
    return refresh.summary().set_index("phase").to_dict("index")


def test_refresh_writes_valid_files_and_skips_private_and_unknown_users(world: World, tmp_path: Path) -> None:
    out = tmp_path / "mal"
    old_ids = world.sample.all_anime["MAL_ID"].tolist()
    names = world.names + ["hidden", "ghost"]
    first_user_anime = world.fake.users[world.names[0]][0]["node"]["id"]
    world.fake.faults = {f"/v2/anime/{old_ids[1]}": ["429"], f"/v2/anime/{old_ids[2]}": ["500", "500"],
                         f"/v2/users/{world.names[1]}/animelist@3": ["drop"], f"/v2/anime/{old_ids[3]}": ["badjson"],
                         f"/v2/anime/{first_user_anime}": ["500"] * 4}  # more than the retries: fails this time
    world.fake.retry_after = "0"
    refresh = run_refresh(world, out, names, anime_ids=tuple(old_ids), since_year=2025, until=(2025, "summer"))
    c = counts(refresh)
    assert c["lists"]["fetched"] == 2 and c["lists"]["not_found"] == 1  # summer 2025 is not out yet
    assert (c["users"]["fetched"], c["users"]["private"], c["users"]["not_found"], c["users"]["failed"]) == (8, 1, 1, 0)
    assert c["anime"]["failed"] == 1 and c["anime"]["fetched"] == len(old_ids) + 2 - 1

    anime, synopses, stats = load_anime(out / "all_anime.csv"), load_synopses(out / "synopses.csv"), load_stats(out / "user_stats.parquet")
    assert set(anime["MAL_ID"]) == (set(old_ids) | set(world.new_ids)) - {first_user_anime}
    assert anime["MAL_ID"].is_unique and synopses["MAL_ID"].is_unique
    assert anime.set_index("MAL_ID").loc[world.new_ids[0], "Premiered"] in ("Spring 2025", "Unknown")
    assert not synopses["sypnopsis"].str.contains("Written by MAL Rewrite").any()
    # user k of the sample is fan{k:03d}, listed first: ids are assigned in file order, so stats match the sample's.
    expected = world.sample.stats.astype(stats.dtypes.to_dict())
    mine = stats[~stats["anime_id"].isin(world.new_ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, expected.sort_values(["user_id", "anime_id"]).reset_index(drop=True))
    assert stats.loc[stats["anime_id"] == world.new_ids[0], "user_id"].tolist() == [0, 2, 4, 6]
    assert not stats.duplicated(["user_id", "anime_id"]).any()

    manifest = json.loads((out / "refresh.json").read_text())
    assert manifest["complete"] is False and manifest["users"] == 8 and manifest["anime"] == len(anime)
    public = [out / "all_anime.csv", out / "synopses.csv", out / "user_stats.parquet", out / "refresh.json"]
    assert not [p for p in public for name in names if name.encode() in p.read_bytes()]  # names stay private
    assert json.loads((out / "private" / "user_ids.json").read_text())["hidden"] == 8
    assert (out / "private").stat().st_mode & 0o077 == 0

    # A rerun fetches only what failed, and a new name gets the next id while the others keep theirs.
    world.fake.log.clear()
    world.fake.users["newcomer"] = world.fake.users[world.names[0]]
    again = run_refresh(world, out, ["newcomer", *names], anime_ids=tuple(old_ids), since_year=2025, until=(2025, "summer"))
    assert counts(again)["anime"]["fetched"] == 1 and counts(again)["users"]["fetched"] == 1
    assert sorted({r.path for r in world.fake.log}) == sorted({f"/v2/anime/{first_user_anime}", "/v2/users/newcomer/animelist"})
    ids = json.loads((out / "private" / "user_ids.json").read_text())
    assert ids["newcomer"] == 10 and ids[world.names[0]] == 0 and ids["ghost"] == 9
    assert json.loads((out / "refresh.json").read_text())["complete"] is True


def test_seasons_between() -> None:
    assert seasons_between(2024, (2025, "spring")) == [(2024, "winter"), (2024, "spring"), (2024, "summer"), (2024, "fall"),
                                                       (2025, "winter"), (2025, "spring")]
    from anime_recs.core.errors import UserInputError

    with pytest.raises(UserInputError, match="after the last season"):
        seasons_between(2026, (2025, "fall"))


def cli(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "anime_recs.cli.main", "mal", "refresh", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.slow  # real processes killed mid-refresh
def test_kill_9_and_ctrl_c_then_resume_never_duplicates(tmp_path: Path) -> None:
    world = sample_world(SECRET, n_users=6, n_anime=40, mean_items=8)
    out, ref = tmp_path / "mal", tmp_path / "reference"
    (tmp_path / "users.txt").write_text("# fans\n" + "\n".join(world.names) + "\n")
    current = tmp_path / "current_anime.csv"
    world.sample.all_anime.to_csv(current, index=False)
    args = ["--out", str(out), "--anime-ids-from", str(current), "--users", str(tmp_path / "users.txt"), "--since-year", "2025",
            "--until-year", "2025", "--until-season", "spring", "--rate", "25", "--backoff", "0.05", "--no-progress"]
    with serve(world.fake):
        env = child_env(MAL_CLIENT_ID=SECRET, MAL_API_BASE_URL=api_root(world.fake))
        anime_log = out / "private" / "anime.jsonl"

        proc = cli(*args, env=env)
        wait_for_lines(anime_log, 5, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "rerun the same command to continue" in stderr, stderr
        outputs = [stdout, stderr]

        proc = cli(*args, env=env)
        wait_for_lines(anime_log, 15, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -9
        done_before = {json.loads(line)["id"] for line in anime_log.read_text().splitlines() if line.endswith("}")}
        assert 15 <= len(done_before) < len(world.sample.all_anime) + 2
        world.fake.log.clear()

        proc = cli(*args, env=env)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        outputs += [stdout, stderr]
        refetched = {int(r.path.rsplit("/", 1)[1]) for r in world.fake.requests_to("/v2/anime/") if r.path.rsplit("/", 1)[1].isdigit()}
        assert not refetched & done_before  # the rerun continued: nothing already checkpointed was asked again
        assert not world.fake.requests_to("/v2/users/") and not world.fake.requests_to("/v2/anime/season")

        reference = cli(*[str(ref) if a == str(out) else a for a in args], env=env)
        assert reference.wait(120) == 0

    for name in ("all_anime.csv", "synopses.csv"):
        resumed, clean = pd.read_csv(out / name), pd.read_csv(ref / name)
        assert resumed["MAL_ID"].is_unique
        pd.testing.assert_frame_equal(resumed, clean)
    resumed_stats, clean_stats = pd.read_parquet(out / "user_stats.parquet"), pd.read_parquet(ref / "user_stats.parquet")
    assert not resumed_stats.duplicated(["user_id", "anime_id"]).any()
    pd.testing.assert_frame_equal(resumed_stats, clean_stats)
    assert sum(line.endswith("}") for line in anime_log.read_text().splitlines()) == len(pd.read_csv(out / "all_anime.csv"))
    assert "MyAnimeList refresh" in outputs[-2] and "anime" in outputs[-2]
    assert not any(SECRET in text for text in outputs)
    assert files_containing(tmp_path, SECRET) == []


def test_missing_client_id_is_one_line_and_touches_nothing(tmp_path: Path) -> None:
    env = child_env()
    env.pop("MAL_CLIENT_ID", None)
    result = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "mal", "refresh", "--out", str(tmp_path / "mal")],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: MAL_CLIENT_ID is not set") and "myanimelist.net/apiconfig" in result.stderr
    assert not (tmp_path / "mal").exists()


def test_a_refresh_in_which_every_request_failed_exits_non_zero(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on: every request is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = child_env(MAL_CLIENT_ID=SECRET, MAL_API_BASE_URL=f"http://127.0.0.1:{port}/v2")
    result = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "mal", "refresh", "--out", str(tmp_path / "mal"),
                             "--anime-ids", "1", "--max-retries", "0", "--no-progress"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: all 1 requests to http://127.0.0.1:") and "nothing was fetched" in last
    assert SECRET not in result.stdout + result.stderr


def test_help_documents_every_option() -> None:
    import argparse

    from anime_recs.cli import mal as mal_cli

    parser = argparse.ArgumentParser()
    mal_cli.add_commands(parser.add_subparsers())
    refresh = parser._subparsers._group_actions[0].choices["mal"]._subparsers._group_actions[0].choices["refresh"]  # type: ignore[union-attr]
    options = [s for a in refresh._actions for s in a.option_strings if s.startswith("--")]
    assert len(options) >= 18
    out = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "mal", "refresh", "--help"], env=child_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for option in options:
        assert option in out.stdout, option
    for action in refresh._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings
    assert "MAL_CLIENT_ID" in out.stdout and "myanimelist.net/apiconfig" in out.stdout and "mal-api:" in out.stdout


def test_an_answer_about_another_anime_fails_cleanly(world: World, tmp_path: Path) -> None:
    # Regression guard: a wrong or shapeless answer must end as "failed", not as a traceback or a wrong row.
    first = world.sample.all_anime["MAL_ID"].iloc[0]
    world.fake.anime[int(first)] = {**world.fake.anime[int(first)], "id": 999_999}
    refresh = run_refresh(world, tmp_path / "mal", [], anime_ids=(int(first), int(world.sample.all_anime["MAL_ID"].iloc[1])))
    assert counts(refresh)["anime"]["failed"] == 1 and counts(refresh)["anime"]["fetched"] == 1
    assert 999_999 not in set(pd.read_csv(tmp_path / "mal" / "all_anime.csv")["MAL_ID"])
