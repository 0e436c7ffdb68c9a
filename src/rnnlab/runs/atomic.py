"""Files that readers never see half-written: atomic JSON writes and a file lock shared across processes.

Stdlib only (``fcntl`` where the platform has it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from rnnlab.runs.signals import signals_deferred

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not on POSIX: in-process locking only
    fcntl = None

LOCK_WAIT_S = 10.0  # how long a writer waits for a file lock before writing without it


def write_json_atomic(path: str | Path, data: Mapping[str, Any], *, in_place_when_full: bool = False) -> None:
    """Write ``data`` so that readers see the old file or the new one, never a mix (temp, fsync, replace).

    ``in_place_when_full``: on a full disk, overwrite the existing file in place instead (a record's final
    state, which must not be lost for want of room for a temp file)."""
    path = Path(path)
    text = json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    # Not tempfile.mkstemp: its files are private (0600) and the record should be as readable as any file
    # the user creates (the umask decides), e.g. by colleagues listing a shared logs/ directory.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if not in_place_when_full or error.errno not in (errno.ENOSPC, errno.EDQUOT) or not path.is_file():
            raise
        _overwrite_in_place(path, text.encode("utf-8"))  # a full disk: the old file's blocks still take it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _overwrite_in_place(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path``'s own blocks (no new file, no truncation before writing), then cut the
    rest: a small record's final state fits where its last one was when the disk has no room for a temp file.
    Not atomic: the last resort when the atomic write cannot be made."""
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(lock_path: str | Path) -> Iterator[None]:
    """An exclusive lock on the file ``lock_path`` (created if missing), shared by every process taking it.

    Taken with signals deferred (a Ctrl-C landing between taking and releasing it would leave it held by a
    lost descriptor, and the last write would wait for ever), and waited for at most ``LOCK_WAIT_S``: a
    holder that hangs costs an edit's protection (the write itself stays atomic), never the file."""
    with signals_deferred():
        if fcntl is None:
            yield
            return
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # closing releases the lock
