"""`anime-recs serve --workers N`: N processes on one port (SO_REUSEPORT), all answering, all stopping with the parent."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serve_world import FIRST_USER, free_port, publish_world, start_server, stop_server


def _serve(root: Path, port: int) -> subprocess.Popen:
    return start_server([sys.executable, "-m", "anime_recs.cli.main", "--root", str(root), "serve", "--port", str(port),
                         "--workers", "2"], f"http://127.0.0.1:{port}/api/info")


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def _gone_within(processes: list[psutil.Process], seconds: float) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return not alive


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workers") / "artifacts"
    publish_world(root)
    return root


def test_two_workers_answer_on_one_port_and_stop_with_the_server(store: Path) -> None:
    port = free_port()
    proc = _serve(store, port)
    try:
        # The server answered once one worker listens; the other listens once its model is loaded.
        deadline = time.monotonic() + 120
        while True:
            workers = [w for w in _workers(proc) if "python" in w.name().lower()]
            listening = {w.pid for w in workers for c in w.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port}
            if len(listening) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(listening) == 2, listening  # each worker has its own socket on the port
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(20):
                assert client.get(f"/api/users/{FIRST_USER}/recommendations", params={"n": 3}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) is not None and _gone_within(workers, 10)
    finally:
        stop_server(proc)


def test_workers_die_with_a_killed_server(store: Path) -> None:
    proc = _serve(store, free_port())
    workers = _workers(proc)
    try:
        proc.kill()  # kill -9: no chance to stop its workers itself
        proc.wait(10)
        assert _gone_within(workers, 10), [w.pid for w in workers if w.is_running()]
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()


def test_a_port_in_use_is_one_line(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ran = subprocess.run([sys.executable, "-m", "anime_recs.cli.main", "--root", str(store), "serve", "--port", str(port),
                              "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}"), ran.stderr
