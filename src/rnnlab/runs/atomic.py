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
        compact = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n"
        _overwrite_in_place(path, [text.encode("utf-8"), compact.encode("utf-8")])  # the old file's blocks
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _overwrite_in_place(path: Path, forms: list[bytes]) -> None:
    """Write the first of ``forms`` (one content, larger to smaller) that ``path``'s own blocks can hold over
    them (no new file, no truncation before writing), then cut the rest: a small record's final state fits
    where its last one was when the disk has no room for a temp file. The room is reserved before a byte is
    written, so a write never stops halfway (which would leave neither the old file nor the new one); where
    no form fits, the old file stays. Not atomic: the last resort when the atomic write cannot be made."""
    fd = os.open(path, os.O_WRONLY)
    try:
        data = _reserve(fd, forms)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def _reserve(fd: int, forms: list[bytes]) -> bytes:
    """The first of ``forms`` the file ``fd`` has room for (``posix_fallocate``: the blocks it holds, or new
    ones); an ENOSPC OSError where none fits."""
    for data in forms:
        try:
            os.posix_fallocate(fd, 0, len(data))
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT) and data is not forms[-1]:
                continue  # a smaller form may fit
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
        return data  # room reserved (or a file system that cannot reserve: written as before)
    return forms[-1]


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
