"""``anime-recs serve --workers N``: N server processes, each with its own listening socket on the same port.

Uvicorn's own ``workers=N`` shares one listening socket: the first worker to wake accepts a whole burst of
connections, and with keep-alive clients one process then serves nearly all of them (measured: 50 clients, two
workers slower than one). Here each worker binds the port with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers evenly. Each worker builds its app with :func:`anime_recs.serve.app.app_from_env`
(the model memory-mapped, so the workers share its pages) and dies with the parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import socket
from typing import Any

from anime_recs.core.errors import UserInputError

#: Pending connections per worker.
BACKLOG = 2048
#: What each worker calls to build its app (named, not imported: the app module starts the workers).
APP_FACTORY = "anime_recs.serve.app:app_from_env"


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies; exit now if it is gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent terminates its workers when it stops
        pass
    if os.getppid() != parent:
        os._exit(0)


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted connections inherit it: no Nagle delay
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _worker(spec: str, env: str, host: str, port: int, parent: int) -> None:
    """One server process (the target of :func:`serve_workers`)."""
    import uvicorn

    from uvicorn.importer import import_from_string

    _die_with_parent(parent)
    os.environ[env] = spec
    app = import_from_string(APP_FACTORY)()  # the model loaded before the socket listens: no connection waits on a loading worker
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[_listening_socket(host, port)])


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on (``SO_REUSEPORT`` would otherwise share it with a second server).

    Raises:
        UserInputError: the port is taken, in one line.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise UserInputError(f"cannot listen on {host}:{port} ({exc.strerror}); stop what uses it or choose --port") from None
    finally:
        probe.close()


def serve_workers(spec: dict[str, Any], env: str, host: str, port: int, workers: int) -> None:
    """Run ``workers`` server processes on ``host:port`` until interrupted; SIGTERM or Ctrl-C stops them all.

    Args:
        spec: what each worker serves (:func:`anime_recs.serve.app.app_from_env` reads it from ``env``).
        env: the environment variable carrying ``spec``.
    """
    check_port_free(host, port)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(json.dumps(spec), env, host, port, os.getpid()), daemon=False)
                 for _ in range(workers)]

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
