"""Which sweep process runs a trial, and whether that process is still alive.

A sweep marks each trial it runs with ``worker = host:pid`` and ``worker_start`` (the process's start time, so
a recycled pid is not taken for the sweep). On the same host a trial whose worker is gone was lost to a kill
(SIGKILL, an out-of-memory kill, a crashed machine that came back): the next sweep fails it at once instead of
waiting for its heartbeat to go stale, and the trials sharing this host's cores count only live workers.

Light (no torch): the sweep's parent process imports it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

WORKER_ATTR = "worker"  # host:pid of the sweep process running the trial
WORKER_START_ATTR = "worker_start"  # that process's start time (clock ticks after boot; Linux), or None


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks after boot (Linux ``/proc``), or None if unknown."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def this_worker() -> dict[str, Any]:
    """The attributes naming this process as a trial's worker."""
    return {WORKER_ATTR: f"{socket.gethostname()}:{os.getpid()}", WORKER_START_ATTR: process_start(os.getpid())}


def worker_host(attrs: Mapping[str, Any]) -> str | None:
    worker = attrs.get(WORKER_ATTR)
    return str(worker).rsplit(":", 1)[0] if worker else None


def worker_alive(attrs: Mapping[str, Any]) -> bool:
    """Whether the worker process named in a trial's user attributes still runs (on this host; call it only for
    trials of this host). A trial without a worker counts as alive: nothing says it is lost."""
    worker = attrs.get(WORKER_ATTR)
    if not worker:
        return True
    try:
        pid = int(str(worker).rsplit(":", 1)[1])
        os.kill(pid, 0)
    except (IndexError, ValueError):
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    started = attrs.get(WORKER_START_ATTR)
    return started is None or process_start(pid) in (None, started)
