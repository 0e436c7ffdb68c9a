"""Whether a process still runs, and since when: the one home of rnnlab's liveness checks.

Used by run records (a ``running`` record whose process is gone reads as killed), run holds (a hold whose
process is gone is taken over) and sweep workers (a trial whose worker is gone was lost). Stdlib only.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime

_PID_REUSE_SLACK_S = 2.0  # /proc start times are derived from a boot time rounded to whole seconds


@functools.lru_cache(maxsize=1)
def hostname() -> str:
    import socket  # lazily: listing runs that are not running never needs it

    return socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rpartition(")")[2].split()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """The start of process ``pid`` in clock ticks after boot (Linux ``/proc``), or None where unknown.
    Exact (no rounding), so two readings of one process compare equal."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> float | None:
    """Wall-clock start of process ``pid`` (seconds since the epoch; Linux), or None where unknown."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    try:
        with open("/proc/stat", encoding="ascii") as file:
            boot = next(float(line.split()[1]) for line in file if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int, since: datetime | float | None = None) -> bool:
    """Whether ``pid`` runs on this host (a zombie does not count); with ``since`` (a time it was known to
    run), also whether it started before then, i.e. is not a newer process that reused the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except (OverflowError, ValueError, TypeError):
        return False
    fields = _stat_fields(pid)
    if fields and fields[0] == "Z":
        return False
    if since is not None:
        moment = since.timestamp() if isinstance(since, datetime) else float(since)
        started = start_time(pid)
        if started is not None and started > moment + _PID_REUSE_SLACK_S:
            return False
    return True
