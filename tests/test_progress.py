"""Long fits show their progress on a terminal and stay silent in logs (pipes, CI, MLflow's captured output)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.conftest import REPO, child_env

FIT = ("from anime_recs.data.sample import make_sample; from anime_recs.models import build_model; "
       "from anime_recs.models.base import Interactions; s = make_sample(300, 120, 30, 1).stats; s = s[s.rating > 0]; "
       "build_model({'family': 'hybrid'}).fit(Interactions.from_frame(s[['user_id', 'anime_id', 'rating']], (1.0, 10.0))); "
       "print('fitted')")


def _on_terminal(code: str) -> tuple[int, str]:
    """Run ``code`` with stderr on a pseudo-terminal; its exit code and what the terminal showed."""
    main, terminal = pty.openpty()
    env = child_env()
    env.pop("ANIME_RECS_PROGRESS", None)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    return proc.wait(timeout=300), shown.decode("utf-8", "replace")


def test_a_fit_on_a_terminal_shows_its_stages() -> None:
    code, shown = _on_terminal(FIT)
    assert code == 0, shown[-2000:]
    assert "fit hybrid on 300 users x 120 anime" in shown
    assert "fit ease on" in shown and "EASE representations (SVD)" in shown  # the last stage, shown when the bar closes
    assert "fit neighbourhood on" in shown and "neighbourhood: final fit on 300 users" in shown


def test_a_fit_in_a_pipe_prints_no_bar() -> None:
    env = child_env()
    env.pop("ANIME_RECS_PROGRESS", None)
    ran = subprocess.run([sys.executable, "-c", FIT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and ran.stdout.strip() == "fitted", ran.stderr[-2000:]
    assert "fit hybrid" not in ran.stderr and " steps [" not in ran.stderr
