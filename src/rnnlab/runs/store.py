"""Run records on disk: the schema of ``run.json``, reading and finding records, editing one, the statuses a
reader derives, reserving a run directory, and the normalisers that make values storable.

A leaf module (stdlib only, no torch): the CLI reads thousands of records, fast. Every write is atomic and
holds the record's file lock (``rnnlab.runs.atomic``), so a reader never sees half a file and no writer
drops another's change.

Schema 1 (``rnnlab runs show --json`` prints one) has the fields of ``FIELDS``, in that order. ``status`` is
stored as running, completed, failed or interrupted; readers derive "killed" (a running record whose process
is gone or silent) and "unreadable".
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnnlab.errors import first_line
from rnnlab.runs.atomic import file_lock, write_json_atomic
from rnnlab.runs.process import hostname, pid_alive

SCHEMA = 1
FIELDS = (
    *("schema", "id", "name", "kind", "dir", "task", "parent", "status", "error", "epoch", "command", "overrides"),
    *("cwd", "started", "ended", "duration_s", "heartbeat", "heartbeat_interval", "host", "pid", "slurm"),
    *("devices", "versions", "git", "params", "derived", "metrics", "checkpoints", "resumes", "tags", "note", "debug"),
    "env",
)
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


def record_lock(run_dir: str | Path) -> contextlib.AbstractContextManager[None]:
    """The lock on ``<run_dir>/.run.json.lock`` that every process editing that record takes."""
    return file_lock(Path(run_dir) / LOCK_FILE)


def load_record(run_dir: Path) -> dict[str, Any]:
    """The stored record as it is (no status derived); raises for a missing or unparsable file."""
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
    with record_lock(run_dir):
        data = load_record(run_dir)
        change(data)
        write_json_atomic(run_dir / RECORD_FILE, data)
    return data


# ------------------------------------------------------------------------------------------- reading


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
    if data.get("host") == (host or hostname()) and isinstance(pid, int) and not pid_alive(pid, since=heartbeat):
        return "killed"
    return "running"


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


# ------------------------------------------------------------------------------------------- normalisers


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


def metrics_field(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Metrics as the record stores them: floats, null where not finite."""
    return {str(name): _float_or_none(value) for name, value in metrics.items()}


def parent_field(parent: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The sweep, comparison or study a run belongs to, as the record stores it; a kind not allowed raises."""
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
