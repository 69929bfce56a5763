"""A step lives only as long as the pipeline that started it.

MLflow starts each step of ``python main.py`` in a session of its own (``setsid``: the
``mlflow run`` process, its shell and the step's Python), so a signal to the pipeline's
process group, ``kill -9`` included, never reaches the step. The pipeline therefore passes
its identity down (:data:`PIPELINE_ENV`: pid and start time, so a reused pid is not
mistaken for it), and:

- each step watches it (:func:`watch_pipeline`): once the pipeline is gone the step
  records that (its callback) and kills its own process group, within a fraction of a second;
- publishing checks it at the last moment (:func:`pipeline_alive`, used by the artifact
  store's commit), so a step whose pipeline is gone publishes nothing;
- a pipeline that starts marks the MLflow runs of dead pipelines as killed (their token
  is a run tag).

A step started by hand (no :data:`PIPELINE_ENV`) is never watched.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import psutil

logger = logging.getLogger(__name__)

#: ``<pid>:<start time>`` of the pipeline process that started this step.
PIPELINE_ENV = "ANIME_RECS_PIPELINE"
#: Seconds between two looks at the pipeline.
WATCH_INTERVAL = 0.2
#: Seconds the step's last words (marking its run) may take before it is killed anyway.
LAST_WORDS_SECONDS = 2.0


def pipeline_token(pid: int | None = None) -> str:
    """The identity of process ``pid`` (default: this one) as :data:`PIPELINE_ENV` holds it."""
    process = psutil.Process(pid)
    return f"{process.pid}:{process.create_time():.3f}"


def pipeline_alive(token: str | None = None) -> bool:
    """False only when the pipeline named by ``token`` (default: :data:`PIPELINE_ENV`) is known to be gone."""
    token = token if token is not None else os.environ.get(PIPELINE_ENV)
    if not token:
        return True
    try:
        pid_text, created_text = token.split(":", 1)
        process = psutil.Process(int(pid_text))
        return abs(process.create_time() - float(created_text)) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    except ValueError:
        return True  # not a token of ours: nothing to watch


def _kill_own_group() -> None:
    """SIGKILL this step's process group (its own session under ``mlflow run``), else only this process."""
    if os.getpgid(0) == os.getsid(0):  # a session leader's group: ours alone (mlflow run's setsid)
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def watch_pipeline(name: str, last_words: Callable[[], None] | None = None) -> threading.Thread | None:
    """Kill this process (and its group) soon after the pipeline of :data:`PIPELINE_ENV` is gone.

    Args:
        name: What is stopping, for the one line printed.
        last_words: Called first (e.g. mark the MLflow run killed); cut short after :data:`LAST_WORDS_SECONDS`.

    Returns:
        The watching thread (a daemon), or None when no pipeline started this process. A pipeline already
        gone when the watch starts (killed while the step was starting) stops the step at once.
    """
    token = os.environ.get(PIPELINE_ENV)
    if not token:
        return None

    def watch() -> None:
        while pipeline_alive(token):
            time.sleep(WATCH_INTERVAL)
        print(f"error: {name}: the pipeline that started it was stopped; stopping too, nothing is published",
              file=sys.stderr, flush=True)
        deadline = threading.Timer(LAST_WORDS_SECONDS, _kill_own_group)
        deadline.daemon = True
        deadline.start()
        try:
            if last_words is not None:
                last_words()
        except Exception as exc:  # noqa: BLE001 - dying anyway; say why the record may be incomplete
            logger.warning("%s: could not record the stop (%s)", name, exc)
        finally:
            _kill_own_group()

    thread = threading.Thread(target=watch, name="pipeline-watch", daemon=True)
    thread.start()
    return thread
