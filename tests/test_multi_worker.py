"""Training under MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 against one process.

Each process runs ``tests/multi_worker_job.py`` (the library's ``train_model``, as the neural_network
step calls it). The two workers must finish, hold identical weights, and reach the loss of one
process trained with the same data, seed and global batch. Only worker 0 (the chief) may write to
the checkpoint folder it was given.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(tmp_path: Path, name: str, mode: str, tf_config: dict | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
    return subprocess.Popen(
        [sys.executable, "-m", "tests.multi_worker_job", str(tmp_path / name), str(tmp_path / f"ckpt-{name}"), mode],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _wait_all(procs: dict[str, subprocess.Popen], tmp_path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, proc in procs.items():
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            log = (tmp_path / f"{name}.log").read_text()[-3000:]
            assert code == 0, f"{name} exited with {code}:\n{log}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _weights(folder: Path) -> list[np.ndarray]:
    with np.load(folder / "weights.npz") as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.mark.slow
def test_two_workers_match_each_other_and_one_process(tmp_path: Path) -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = {f"worker{i}": _start(tmp_path, f"worker{i}", "worker", {"cluster": cluster, "task": {"type": "worker", "index": i}})
             for i in range(2)}
    procs["single"] = _start(tmp_path, "single", "single", None)
    _wait_all(procs, tmp_path)

    chief, other, single = (_weights(tmp_path / name) for name in ("worker0", "worker1", "single"))
    assert len(chief) == len(other) == len(single) > 0
    for a, b in zip(chief, other):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    loss_multi = json.loads((tmp_path / "worker0" / "history.json").read_text())
    loss_single = json.loads((tmp_path / "single" / "history.json").read_text())
    assert len(loss_multi) == len(loss_single) == 2
    assert loss_multi[-1] < loss_multi[0]  # it learned
    np.testing.assert_allclose(loss_multi[-1], loss_single[-1], rtol=0.03)

    # The TF convention: only the chief writes where it was told; the others write to scratch space.
    assert (tmp_path / "ckpt-worker0" / "state.json").exists()
    assert not (tmp_path / "ckpt-worker1").exists() or not any((tmp_path / "ckpt-worker1").iterdir())
