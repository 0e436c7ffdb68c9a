"""One writer per run: the hold a command takes on the run directory it writes, for as long as it runs.

The hold is ``<run dir>/.run.hold``, locked with ``fcntl.flock`` (exclusive, never waited for): the kernel
gives it to one process only and frees it when that process dies however it dies (kill -9 included), so of
two commands started at once exactly one gets it, and a hold whose process is gone is taken over at once.
The file says who holds it (pid, host, process start, heartbeat) for the refusal's message; its heartbeat
is rewritten every ``HEARTBEAT_S`` seconds. A lock may not reach across hosts on some network filesystems, so
a hold taken from another host is also respected while its heartbeat is fresh (``STALE_HEARTBEATS``
intervals). The holder removes the file when it ends; one left by a killed process is taken over.

Stdlib only (a leaf like ``record``): Hydra callbacks take the hold before anything is imported or written.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from rnnlab.errors import CommandError
from rnnlab.runs.process import hostname, pid_alive, start_time

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not on POSIX: holds are not enforced
    fcntl = None

HOLD_FILE = ".run.hold"
HEARTBEAT_S = 30.0
STALE_HEARTBEATS = 3  # a hold from another host whose heartbeat is older than this many intervals is stale
_CONTENT_BYTES = 512  # the file's fixed size: a heartbeat rewrites it in place with one write
_BUSY_RETRY_S = 0.5  # a lock found taken is asked again this long (a probe holds it for microseconds)


class RunHeld(CommandError):
    """The run directory is held by another live process; the message names it."""


@dataclass
class Holder:
    """Who holds a run directory, as its hold file says."""

    pid: int | None
    host: str | None
    started: str | None
    heartbeat: str | None

    @classmethod
    def parse(cls, text: str) -> Holder:
        try:
            data = json.loads(text)
        except ValueError:  # empty (just created) or unreadable
            data = {}
        data = data if isinstance(data, dict) else {}
        pid = data.get("pid")
        return cls(pid if isinstance(pid, int) else None, data.get("host"), data.get("started"), data.get("heartbeat"))

    def live_elsewhere(self, now: datetime | None = None) -> bool:
        """Whether this names a process on another host whose heartbeat is fresh (its lock may not reach us)."""
        if not self.host or self.host == hostname() or not self.heartbeat:
            return False
        try:
            beat = datetime.fromisoformat(self.heartbeat)
        except ValueError:
            return False
        age = ((now or datetime.now(timezone.utc)) - beat).total_seconds()
        return age <= STALE_HEARTBEATS * HEARTBEAT_S

    def live_here(self) -> bool:
        """Whether this names another live process of this host that started when the hold says."""
        if self.host != hostname() or self.pid is None or self.pid == os.getpid():
            return False
        started = _parse_time(self.started)
        return pid_alive(self.pid, since=started)

    def describe(self) -> str:
        since = f" since {self.started[:19].replace('T', ' ')} UTC" if self.started else ""
        return f"pid {self.pid if self.pid is not None else '?'} on {self.host or '?'}{since}"


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _iso(moment: float | None = None) -> str:
    when = datetime.fromtimestamp(moment, timezone.utc) if moment else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def refusal(subject: str | Path, holder: Holder) -> RunHeld:
    """``<subject> is in use by another command (pid 12 on host since ...); allowed: ...``"""
    return RunHeld(
        f"{subject} is in use by another command ({holder.describe()}); allowed: wait for it to end "
        "(or stop it), then run this again"
    )


class RunHold:
    """This process's exclusive hold on a run directory (``take``); released by ``release`` or at exit."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.dir = run_dir
        self.path = run_dir / HOLD_FILE
        self._fd: int | None = fd
        self._inode = os.fstat(fd).st_ino
        self._started = _iso(start_time(os.getpid()))
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the heartbeat never writes to a descriptor that release closed
        self._write()
        self._thread = threading.Thread(target=self._beat, name="rnnlab-run-hold", daemon=True)
        self._thread.start()
        atexit.register(self.release)

    @classmethod
    def take(cls, run_dir: str | Path) -> RunHold:
        """Hold ``run_dir`` (created if missing) or raise ``RunHeld`` naming the live holder."""
        run_dir = Path(run_dir).absolute()
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / HOLD_FILE
        deadline = time.monotonic() + _BUSY_RETRY_S
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(fd)
                # The holder removes the file as it ends: a lock on the removed file holds nothing, try again.
                if locked and _same_file(fd, path):
                    holder = Holder.parse(_read(fd))
                    if holder.live_elsewhere() or holder.live_here():  # a lock that does not reach that process
                        raise refusal(run_dir, holder)
                    return cls(run_dir, fd)
            except BaseException:
                os.close(fd)
                raise
            holder = Holder.parse(_read(fd))
            os.close(fd)
            if not locked and time.monotonic() > deadline:
                raise refusal(run_dir, holder)
            time.sleep(0.02)

    def release(self) -> None:
        """Remove the hold file (when it is still this hold's) and free the lock."""
        self._stop.set()
        with self._lock:
            if self._fd is None:
                return
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = None

    def _write(self) -> None:
        content = json.dumps({"pid": os.getpid(), "host": hostname(), "started": self._started, "heartbeat": _iso()})
        with self._lock:
            if self._fd is not None:
                os.pwrite(self._fd, content.encode().ljust(_CONTENT_BYTES), 0)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # a full disk must not end the run
                self._write()


def live_holder(run_dir: str | Path) -> Holder | None:
    """The live process holding ``run_dir``, or None (nothing is created; a free lock is taken for a moment)."""
    path = Path(run_dir) / HOLD_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        holder = Holder.parse(_read(fd))
        if not _try_lock(fd):
            return holder
        return holder if holder.live_elsewhere() or holder.live_here() else None
    finally:
        os.close(fd)  # closing frees a lock taken here


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int) -> str:
    try:
        return os.pread(fd, _CONTENT_BYTES, 0).decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
