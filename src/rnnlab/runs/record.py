"""The run record: ``run.json`` in every run directory, what ``rnnlab runs`` reads.

A leaf module (stdlib only, no torch): training writes it, the CLI reads thousands of them, both fast.
Every write is atomic (temp file in the same directory, fsync, ``os.replace``) and holds a lock: a
threading lock against the heartbeat thread and ``fcntl.flock`` on a sidecar file against other
processes (``rnnlab runs tag`` editing a live run), so a reader never sees half a file and no writer
drops another's change.

Schema 1 (``rnnlab runs show --json`` prints one): ``schema id name kind dir task parent status error epoch
command overrides cwd started ended duration_s heartbeat heartbeat_interval host pid slurm devices versions git
params derived metrics checkpoints resumes tags note debug``. ``status`` is stored as running, completed, failed or
interrupted; readers derive "killed" (a running record whose process is gone or silent) and "unreadable".
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from rnnlab.errors import first_line
from rnnlab.runs.process import hostname as _hostname
from rnnlab.runs.process import pid_alive
from rnnlab.runs.scheduler import slurm_job

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not on POSIX: in-process locking only
    fcntl = None

SCHEMA = 1
RECORD_FILE = "run.json"
LOCK_FILE = ".run.json.lock"
PATCH_FILE = "git.patch"
KINDS = ("train", "eval", "generate")
PARENT_KINDS = ("sweep", "compare", "study", "multirun")
FINAL_STATUSES = ("completed", "failed", "interrupted")
# Stored statuses are "running" + FINAL_STATUSES; these two are only ever derived when reading.
DERIVED_STATUSES = ("killed", "unreadable")
STATUSES = ("running", *FINAL_STATUSES, *DERIVED_STATUSES)
# Edited by users (`rnnlab runs tag/note`) while a run may be live: on disk they win over a process's memory.
USER_FIELDS = ("tags", "note")
STALE_HEARTBEATS = 3  # a running record whose heartbeat is older than this many intervals was killed
# Directories below a run that never hold records: not walked by find_records.
SKIP_DIRS = frozenset({"checkpoints", ".hydra", "__pycache__", "plugins", "tensorboard", "figures", "wandb"})
VERSIONED_PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "optuna", "rnnlab")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------- files


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


LOCK_WAIT_S = 10.0  # how long a writer waits for the record's file lock before writing without it


@contextlib.contextmanager
def file_lock(run_dir: str | Path) -> Iterator[None]:
    """An exclusive lock on ``<run_dir>/.run.json.lock`` shared by every process editing that record.

    Taken with signals deferred (a Ctrl-C landing between taking and releasing it would leave it held by a
    lost descriptor, and the run's last write would wait for ever), and waited for at most ``LOCK_WAIT_S``:
    a holder that hangs costs an edit's protection (the write itself stays atomic), never the record."""
    with signals_deferred():
        if fcntl is None:
            yield
            return
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
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


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """In the main thread, SIGINT and SIGTERM arriving inside the block take effect as it ends (re-raised,
    so their own handlers run then: Ctrl-C still interrupts, a few milliseconds later). In other threads,
    where Python runs no signal handlers, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    ended = False

    def defer(signum: int, frame: Any) -> None:
        if not ended:
            caught.append(signum)
            return
        # Left installed by a signal that landed while the handlers were being restored: act as the handler
        # it replaced would have.
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    try:
        # Inside the try: a signal handled before both are swapped still gets the first one restored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, defer)
        yield
    finally:
        ended = True
        for swapped, handler in previous.items():
            signal.signal(swapped, handler if handler is not None else signal.SIG_DFL)
        for number in caught:
            signal.raise_signal(number)


def _load(run_dir: Path) -> dict[str, Any]:
    with open(run_dir / RECORD_FILE, encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def edit_record(run_dir: str | Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Re-read, apply ``change`` in place, write back; under the record's lock, so a live run's heartbeat
    (which takes the user fields from disk under the same lock) neither loses nor clobbers the edit.

    Of a live run, only the user fields (``USER_FIELDS``: tags, note) should be edited this way: the running
    process rewrites all others from its memory.
    """
    run_dir = Path(run_dir)
    with file_lock(run_dir):
        data = _load(run_dir)
        change(data)
        write_json_atomic(run_dir / RECORD_FILE, data)
    return data


# ------------------------------------------------------------------------------------------- environment


def _run_git(cwd: str | Path, *args: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):  # git missing, cwd missing, hung
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout containing ``cwd``; None outside git or without git."""
    cwd = cwd or os.getcwd()
    commit = _run_git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _run_git(cwd, "status", "--porcelain", "--untracked-files=normal")
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def git_patch(cwd: str | Path | None = None) -> str:
    """``git diff HEAD`` (binary-safe), preceded by ``#`` comment lines naming untracked files (whose
    content it leaves out); ``git apply`` ignores the comments."""
    cwd = cwd or os.getcwd()
    diff = _run_git(cwd, "diff", "HEAD", "--binary") or ""
    untracked = (_run_git(cwd, "ls-files", "--others", "--exclude-standard") or "").split()
    header = "".join(f"# untracked, not in this patch: {name}\n" for name in untracked)
    return header + diff


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Versions from package metadata (importing torch only to ask would cost seconds); missing -> None."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """Where and with what this process runs: ``{"host", "pid", "versions", "slurm"}`` (slurm: its SLURM job,
    rnnlab.runs.scheduler, or None)."""
    return {"host": _hostname(), "pid": os.getpid(), "versions": dict(package_versions()), "slurm": slurm_job()}


def current_command() -> list[str]:
    """This process's command as typed, with the Python executable: ``[python, script, *args]``."""
    return [sys.executable, *sys.argv]


# ------------------------------------------------------------------------------------------- liveness


def derive_status(data: Mapping[str, Any], *, host: str | None = None, now: datetime | None = None) -> str:
    """The status a reader should believe: a stored "running" whose process is gone reads as "killed"."""
    status = data.get("status")
    if status != "running":
        return status if status in STATUSES else "unreadable"
    now = now or datetime.now(timezone.utc)
    heartbeat = parse_time(data.get("heartbeat"))
    interval = data.get("heartbeat_interval") or 30.0
    if heartbeat is None or (now - heartbeat).total_seconds() > STALE_HEARTBEATS * float(interval):
        return "killed"
    pid = data.get("pid")
    if data.get("host") == (host or _hostname()) and isinstance(pid, int) and not pid_alive(pid, since=heartbeat):
        return "killed"
    return "running"


# ------------------------------------------------------------------------------------------- reading


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """The stored record with ``status`` derived (see ``derive_status``) and ``dir`` where it was found.

    A run.json that cannot be parsed does not raise: it reads as ``status: "unreadable"`` with the reason
    in ``error``, so one broken file cannot break a listing (and ``rnnlab runs rm`` can still remove it).
    """
    run_dir = os.path.abspath(run_dir)
    try:
        with open(os.path.join(run_dir, RECORD_FILE), "rb") as file:
            data = json.loads(file.read())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return {
            "schema": None,
            "id": None,
            "name": os.path.basename(run_dir),
            "dir": run_dir,
            "status": "unreadable",
            "error": f"{RECORD_FILE}: {first_line(error)[:500]}",
            "params": {},
            "metrics": {},
            "tags": [],
            "debug": False,
        }
    data["dir"] = run_dir
    if data.get("status") not in FINAL_STATUSES:
        data["status"] = derive_status(data)
    return data


def _walk(directory: str, found: list[str]) -> None:
    try:
        with os.scandir(directory) as entries:
            subdirs = []
            for entry in entries:
                if entry.name == RECORD_FILE:
                    found.append(directory)
                elif entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append(entry.path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    for subdir in subdirs:
        _walk(subdir, found)


def _run_dirs(roots: Iterable[str | Path]) -> list[str]:
    found: list[str] = []
    for root in roots:
        _walk(os.path.abspath(root), found)
    return list(dict.fromkeys(found))


def find_run_dirs(*roots: str | Path) -> list[Path]:
    """Every directory holding a run.json below (or at) ``roots``, without entering checkpoints and the like."""
    return [Path(path) for path in _run_dirs(roots)]


def find_records(*roots: str | Path) -> list[dict[str, Any]]:
    """``read_record`` of every run below ``roots`` (eval/generate runs nested in a run dir included)."""
    records = []
    for run_dir in _run_dirs(roots):
        with contextlib.suppress(FileNotFoundError):  # deleted between the walk and the read
            records.append(read_record(run_dir))
    return records


# ------------------------------------------------------------------------------------------- run dirs


def reserve_dir(parent: str | Path, prefix: str = "version_") -> Path:
    """Create and return ``<parent>/<prefix><n>``, n one past the highest taken; safe when many processes
    (on one machine or sharing a filesystem) ask at once, as ``mkdir`` either creates or fails atomically."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    taken = [entry.name[len(prefix) :] for entry in os.scandir(parent) if entry.name.startswith(prefix)]
    number = max((int(n) for n in taken if n.isdigit()), default=-1) + 1
    while True:
        candidate = parent / f"{prefix}{number}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            number += 1
            continue
        return candidate


# ------------------------------------------------------------------------------------------- writing


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"a.b": scalar}``; values that are not JSON scalars become strings."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        elif value is None or isinstance(value, (bool, int, str)):
            flat[name] = value
        elif isinstance(value, float):
            flat[name] = value if math.isfinite(value) else str(value)
        else:
            flat[name] = str(value)
    return flat


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None  # strict JSON has no NaN: a diverged metric is null


def _metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    return {str(name): _float_or_none(value) for name, value in metrics.items()}


def _parent(parent: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    if parent.get("kind") not in PARENT_KINDS:
        raise ValueError(f"parent kind {parent.get('kind')!r} is not allowed; allowed: {', '.join(PARENT_KINDS)}")
    trial = parent.get("trial")
    return {
        "kind": parent["kind"],
        "dir": str(parent.get("dir")) if parent.get("dir") is not None else None,
        "study": parent.get("study"),
        "trial": int(trial) if trial is not None else None,
    }


def _git_with_patch(cwd: Path, run_dir: Path, patch_name: str) -> dict[str, Any] | None:
    """``git_state`` plus ``patch``: the file in ``run_dir`` holding a dirty checkout's changes, else None."""
    git = git_state(cwd)
    if git is not None:
        git["patch"] = None
        if git["dirty"]:
            (run_dir / patch_name).write_text(git_patch(cwd), encoding="utf-8")
            git["patch"] = patch_name
    return git


class RunRecord:
    """The live record of a run this process executes: ``start`` (or ``resume``), ``update``, ``finish``.

    A daemon thread rewrites ``heartbeat`` every ``heartbeat_interval`` seconds, so a reader can tell a
    run that is still going from one whose process died without saying so (SIGKILL, power loss).
    """

    def __init__(self, run_dir: Path, data: dict[str, Any], heartbeat_interval: float) -> None:
        self.dir = run_dir
        self.path = run_dir / RECORD_FILE
        self._data = data
        self._lock = threading.RLock()
        self._started = time.monotonic()
        self._finished = False
        self._stop = threading.Event()
        self._interval = heartbeat_interval
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- creation

    @classmethod
    def start(
        cls,
        run_dir: str | Path,
        *,
        kind: str,
        name: str,
        task: str,
        command: Iterable[str],
        overrides: Iterable[str],
        params: Mapping[str, Any],
        derived: Iterable[str] = (),
        parent: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        note: str | None = None,
        debug: bool = False,
        devices: Iterable[str] = (),
        cwd: str | Path | None = None,
        heartbeat_interval: float = 30.0,
    ) -> RunRecord:
        """Write ``<run_dir>/run.json`` (status running) and, for a dirty checkout, ``git.patch``; start the
        heartbeat. ``cwd`` is where git is asked (default: the current directory, which is also recorded as
        the directory the command was run from)."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval={heartbeat_interval!r} is not allowed; must be > 0")
        import uuid  # lazily, like every writer-only module: listing runs starts faster

        run_dir = Path(run_dir).absolute()
        if (run_dir / RECORD_FILE).exists():
            raise FileExistsError(f"{run_dir / RECORD_FILE} exists: continue it with RunRecord.resume")
        run_dir.mkdir(parents=True, exist_ok=True)
        typed_in = os.getcwd()  # where the command was typed: `rnnlab runs rerun --exec` runs it there again
        cwd = Path(cwd or typed_in).absolute()
        git = _git_with_patch(cwd, run_dir, PATCH_FILE)
        env = environment()
        started = now_iso()
        data = {
            "schema": SCHEMA,
            "id": uuid.uuid4().hex,
            "name": str(name),
            "kind": kind,
            "dir": str(run_dir),
            "task": str(task),
            "parent": _parent(parent),
            "status": "running",
            "error": None,
            "epoch": None,
            "command": [str(arg) for arg in command],
            "overrides": [str(arg) for arg in overrides],
            "cwd": typed_in,
            "started": started,
            "ended": None,
            "duration_s": None,
            "heartbeat": started,
            "heartbeat_interval": float(heartbeat_interval),
            "host": env["host"],
            "pid": env["pid"],
            "slurm": env["slurm"],
            "devices": [str(device) for device in devices],
            "versions": env["versions"],
            "git": git,
            "params": flatten_params(params),
            "derived": [str(key) for key in derived],  # params that copy another (rnnlab.runs.settings)
            "metrics": {},
            "checkpoints": {"best": None, "last": None},
            "resumes": [],
            "tags": [str(tag) for tag in tags],
            "note": str(note or ""),
            "debug": bool(debug),
        }
        record = cls(run_dir, data, heartbeat_interval)
        record._write(set(data))
        record._start_heartbeat()
        return record

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        command: Iterable[str],
        overrides: Iterable[str],
        heartbeat_interval: float = 30.0,
        cwd: str | Path | None = None,
    ) -> RunRecord:
        """Continue the record of an earlier run in ``run_dir``: a new ``resumes`` entry, status running.

        The original ``command``, ``overrides``, ``started`` and ``git`` are kept (they recreate the run); the
        entry has this session's own ``git`` (its changes in ``git.resume<n>.patch`` when dirty).
        """
        run_dir = Path(run_dir).absolute()
        if not (run_dir / RECORD_FILE).is_file():
            raise FileNotFoundError(f"no {RECORD_FILE} in {run_dir}: start a record instead")
        with file_lock(run_dir):
            data = _load(run_dir)
        env = environment()
        started = now_iso()
        session = len(data.setdefault("resumes", [])) + 1
        git = _git_with_patch(Path(cwd or os.getcwd()).absolute(), run_dir, f"git.resume{session}.patch")
        data["resumes"].append(
            {
                "command": [str(arg) for arg in command],
                "overrides": [str(arg) for arg in overrides],
                "started": started,
                "ended": None,
                "status": "running",
                "error": None,
                "pid": env["pid"],
                "host": env["host"],
                "slurm": env["slurm"],
                "git": git,
            }
        )
        data.update(
            status="running",
            error=None,
            ended=None,
            duration_s=None,
            heartbeat=started,
            heartbeat_interval=float(heartbeat_interval),
            pid=env["pid"],
            host=env["host"],
            slurm=env["slurm"],
        )
        record = cls(run_dir, data, heartbeat_interval)
        record._write({"resumes", "status", "error", "ended", "duration_s", "heartbeat", "pid", "host", "slurm"})
        record._start_heartbeat()
        return record

    # ---------------------------------------------------------------- access

    @property
    def id(self) -> str:
        return self._data["id"]

    @property
    def data(self) -> dict[str, Any]:
        """A copy of the record as last written."""
        with self._lock:
            return json.loads(json.dumps(self._data))

    # ---------------------------------------------------------------- changes

    def update(self, **fields: Any) -> None:
        """Set record fields and write (``epoch=3``, ``metrics={...}``); ``metrics`` and ``checkpoints``
        are merged into what is there, so partial updates keep earlier values."""
        unknown = sorted(set(fields) - set(self._data) | set(fields) & {"schema", "id"})
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a record field that can be updated")
        with signals_deferred(), self._lock:
            for key, value in fields.items():
                if key == "metrics":
                    self._data["metrics"].update(_metrics(value))
                elif key == "checkpoints":
                    self._data["checkpoints"].update({k: str(v) if v is not None else None for k, v in value.items()})
                elif key == "params":
                    self._data["params"] = flatten_params(value)
                elif key == "parent":
                    self._data["parent"] = _parent(value)
                else:
                    self._data[key] = value
            self._write(set(fields))

    def finish(
        self,
        status: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        checkpoints: Mapping[str, str | None] | None = None,
        error: str | None = None,
        epoch: int | None = None,
    ) -> None:
        """End the record: status, ``ended``, this session's ``duration_s`` (also in the resume entry of a
        resumed run); stops the heartbeat. Only the first call counts."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status {status!r} is not allowed; allowed: {', '.join(FINAL_STATUSES)}")
        with signals_deferred(), self._lock:
            if self._finished:
                return
            self._finished = True
            self._stop.set()
            ended = now_iso()
            error = " ".join(str(error).split())[:500] if error else None
            self._data.update(
                status=status, error=error, ended=ended, duration_s=round(time.monotonic() - self._started, 3)
            )
            if epoch is not None:
                self._data["epoch"] = int(epoch)
            if metrics:
                self._data["metrics"].update(_metrics(metrics))
            if checkpoints:
                self._data["checkpoints"].update({k: str(v) if v else None for k, v in checkpoints.items()})
            if self._data.get("resumes") and self._data["resumes"][-1].get("ended") is None:
                self._data["resumes"][-1].update(status=status, error=error, ended=ended)
            self._write({"status", "error", "ended", "duration_s", "epoch", "metrics", "checkpoints", "resumes"})
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @contextlib.contextmanager
    def guard(self) -> Iterator[RunRecord]:
        """Finish the record however the block ends: completed, interrupted (Ctrl-C; SIGTERM with
        ``interrupt_on_sigterm``) or failed with the error's line; the exception propagates."""
        try:
            yield self
        except KeyboardInterrupt:
            self.finish("interrupted")
            raise
        except SystemExit as exit_:
            if _interrupted(exit_):
                self.finish("interrupted")
            elif exit_.code in (0, None):
                self.finish("completed")
            else:
                self.finish("failed", error=str(exit_.code))
            raise
        except BaseException as error:
            self.finish("failed", error=first_line(error)[:500])
            raise
        else:
            self.finish("completed")

    # ---------------------------------------------------------------- internals

    def _write(self, own_fields: set[str]) -> None:
        """Write the record; user fields not changed by this process are taken from disk (see USER_FIELDS)."""
        with self._lock, file_lock(self.dir):
            with contextlib.suppress(OSError, ValueError):
                on_disk = _load(self.dir)
                for key in USER_FIELDS:
                    if key not in own_fields and key in on_disk:
                        self._data[key] = on_disk[key]
            write_json_atomic(self.path, self._data, in_place_when_full=self._finished)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if self._finished:
                    return
                self._data["heartbeat"] = now_iso()
                with contextlib.suppress(OSError):  # a full disk must not kill the run
                    self._write({"heartbeat"})

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"rnnlab-heartbeat-{self.id[:8]}", daemon=True)
        self._thread.start()


def _interrupted(error: BaseException | None) -> bool:
    """Whether a SystemExit stands for an interruption. Lightning's trainer turns Ctrl-C (and so SIGTERM under
    ``interrupt_on_sigterm``) into ``sys.exit(1)`` raised while handling the KeyboardInterrupt; its own SIGTERM
    handling raises ``SIGTERMException``, a SystemExit without a code (known by name: no Lightning import)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt) or type(error).__name__ == "SIGTERMException":
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, SLURM's time limit) raises KeyboardInterrupt in the main thread,
    so ``RunRecord.guard`` records the run as interrupted; the previous handler is restored afterwards.
    Outside the main thread (where handlers cannot be set) it does nothing."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
