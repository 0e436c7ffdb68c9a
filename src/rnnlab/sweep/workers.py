"""Which sweep process runs a trial, and whether that process is still alive.

A sweep marks each trial it runs with ``worker = host:pid`` and ``worker_start`` (the process's start time, so
a recycled pid is not taken for the sweep). On the same host a trial whose worker is gone was lost to a kill
(SIGKILL, an out-of-memory kill, a crashed machine that came back): the next sweep fails it at once instead of
waiting for its heartbeat to go stale, and the trials sharing this host's cores count only live workers.

Light (no torch): the sweep's parent process imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rnnlab.runs.process import hostname, pid_alive, start_ticks

WORKER_ATTR = "worker"  # host:pid of the sweep process running the trial
WORKER_START_ATTR = "worker_start"  # that process's start time (clock ticks after boot; Linux), or None
# The SLURM job running the trial (as rnnlab runs and squeue name it), set by the trial job: a rerun of a sweep
# whose process was killed cancels the job of a trial it records lost, whose result nobody would read.
SLURM_JOB_ATTR = "slurm_job_id"


def this_worker() -> dict[str, Any]:
    """The attributes naming this process as a trial's worker."""
    return {WORKER_ATTR: f"{hostname()}:{os.getpid()}", WORKER_START_ATTR: start_ticks(os.getpid())}


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
    except (IndexError, ValueError):
        return True
    if not pid_alive(pid):
        return False
    started = attrs.get(WORKER_START_ATTR)
    return started is None or start_ticks(pid) in (None, started)
