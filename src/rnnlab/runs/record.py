"""The live record of a run this process executes (``RunRecord``): ``run.json`` in its run directory.

Started (or resumed) when the run starts, kept current (epoch, metrics, a heartbeat), finished with the run's
fate. The schema, reading and finding records are in ``rnnlab.runs.store``; the atomic writes and the file
lock in ``rnnlab.runs.atomic``. Stdlib only (no torch): a leaf like the rest of ``rnnlab.runs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rnnlab.errors import first_line, interrupting_signal
from rnnlab.runs.atomic import write_json_atomic
from rnnlab.runs.environment import environment, git_with_patch
from rnnlab.runs.signals import signals_deferred
from rnnlab.runs.store import (
    FIELDS,
    FINAL_STATUSES,
    KINDS,
    PATCH_FILE,
    RECORD_FILE,
    SCHEMA,
    USER_FIELDS,
    derive_status,
    flatten_params,
    load_record,
    metrics_field,
    now_iso,
    parent_field,
    parse_time,
    record_lock,
)


def _check_start(kind: str, heartbeat_interval: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
    if heartbeat_interval <= 0:
        raise ValueError(f"heartbeat_interval={heartbeat_interval!r} is not allowed; must be > 0")


def _session(cwd: str | Path | None, run_dir: Path, patch_name: str) -> dict[str, Any]:
    """This process's session of a record: when it started, where it runs, with what, from which checkout
    (a dirty one's changes saved as ``patch_name`` in ``run_dir``)."""
    env = environment()
    git = git_with_patch(Path(cwd or os.getcwd()).absolute(), run_dir, patch_name)
    return {"started": now_iso(), **env, "git": git}


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
        self._earlier_s = 0.0  # a resumed run's time in its earlier sessions
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
        env: Mapping[str, str] | None = None,
        devices: Iterable[str] = (),
        cwd: str | Path | None = None,
        heartbeat_interval: float = 30.0,
    ) -> RunRecord:
        """Write ``<run_dir>/run.json`` (status running) and, for a dirty checkout, ``git.patch``; start the
        heartbeat. ``cwd``: where git is asked (default: the current directory, also recorded as where the command
        ran). ``env``: the variables that shaped the run beside its command (``rnnlab runs rerun`` sets them)."""
        _check_start(kind, heartbeat_interval)
        import uuid  # lazily, like every writer-only module: listing runs starts faster

        run_dir = Path(run_dir).absolute()
        if (run_dir / RECORD_FILE).exists():
            raise FileExistsError(f"{run_dir / RECORD_FILE} exists: continue it with RunRecord.resume")
        run_dir.mkdir(parents=True, exist_ok=True)
        typed_in = os.getcwd()  # where the command was typed: `rnnlab runs rerun --exec` runs it there again
        session = _session(cwd or typed_in, run_dir, PATCH_FILE)
        data: dict[str, Any] = dict.fromkeys(FIELDS)  # in the schema's order; what is not set here is null
        data.update(
            schema=SCHEMA,
            id=uuid.uuid4().hex,
            name=str(name),
            kind=kind,
            dir=str(run_dir),
            task=str(task),
            parent=parent_field(parent),
            status="running",
            command=[str(arg) for arg in command],
            overrides=[str(arg) for arg in overrides],
            cwd=typed_in,
            heartbeat=session["started"],
            heartbeat_interval=float(heartbeat_interval),
            devices=[str(device) for device in devices],
            params=flatten_params(params),
            derived=[str(key) for key in derived],  # params that copy another (rnnlab.runs.settings)
            metrics={},
            checkpoints={"best": None, "last": None},
            resumes=[],
            tags=[str(tag) for tag in tags],
            note=str(note or ""),
            debug=bool(debug),
            env={str(key): str(value) for key, value in (env or {}).items()},
            **session,
        )
        return cls._begin(run_dir, data, heartbeat_interval, set(data))

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
        with record_lock(run_dir):
            data = load_record(run_dir)
        earlier = _time_so_far(data)
        number = len(data.setdefault("resumes", [])) + 1
        session = _session(cwd, run_dir, f"git.resume{number}.patch")
        data["resumes"].append(
            {
                "after": derive_status(data),  # how the run had ended: interrupted, killed, failed, ...
                "command": [str(arg) for arg in command],
                "overrides": [str(arg) for arg in overrides],
                "started": session["started"],
                "ended": None,
                "status": "running",
                "error": None,
                "pid": session["pid"],
                "host": session["host"],
                "slurm": session["slurm"],
                "git": session["git"],
            }
        )
        data.update(
            status="running",
            error=None,
            ended=None,
            duration_s=earlier,  # the earlier sessions' time; finish adds this one's
            heartbeat=session["started"],
            heartbeat_interval=float(heartbeat_interval),
            pid=session["pid"],
            host=session["host"],
            slurm=session["slurm"],
        )
        changed = {"resumes", "status", "error", "ended", "duration_s", "heartbeat", "pid", "host", "slurm"}
        record = cls._begin(run_dir, data, heartbeat_interval, changed)
        record._earlier_s = earlier
        return record

    @classmethod
    def _begin(cls, run_dir: Path, data: dict[str, Any], heartbeat_interval: float, fields: set[str]) -> RunRecord:
        """Write the record (``fields`` are this process's own) and start its heartbeat."""
        record = cls(run_dir, data, heartbeat_interval)
        record._write(fields)
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
                    self._data["metrics"].update(metrics_field(value))
                elif key == "checkpoints":
                    self._data["checkpoints"].update({k: str(v) if v is not None else None for k, v in value.items()})
                elif key == "params":
                    self._data["params"] = flatten_params(value)
                elif key == "parent":
                    self._data["parent"] = parent_field(value)
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
        """End the record: status, ``ended``, ``duration_s`` (the time it ran, over all its sessions: not
        ``ended - started`` of a resumed run, which counts the time between them); stops the heartbeat.
        Only the first call counts."""
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
                status=status,
                error=error,
                ended=ended,
                duration_s=round(self._earlier_s + time.monotonic() - self._started, 3),
            )
            if epoch is not None:
                self._data["epoch"] = int(epoch)
            if metrics:
                self._data["metrics"].update(metrics_field(metrics))
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
        ``interruptible``) or failed with the error's line; the exception propagates."""
        try:
            yield self
        except BaseException as error:
            status, line = fate(error)
            self.finish(status, error=line)
            raise
        else:
            self.finish("completed")

    # ---------------------------------------------------------------- internals

    def _write(self, own_fields: set[str]) -> None:
        """Write the record; user fields not changed by this process are taken from disk (see USER_FIELDS)."""
        with self._lock, record_lock(self.dir):
            with contextlib.suppress(OSError, ValueError):
                on_disk = load_record(self.dir)
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


def fate(error: BaseException) -> tuple[str, str | None]:
    """(status, error line) of a run that ended with ``error``: interrupted by Ctrl-C or SIGTERM (also as
    Lightning reports them: ``sys.exit(1)`` raised while handling the KeyboardInterrupt, or its
    ``SIGTERMException``), completed by a clean exit, else failed with the error's line."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", None
    if isinstance(error, SystemExit):
        if interrupting_signal(error) is not None:
            return "interrupted", None
        if _requeued_by_submitit(error):
            return (
                "interrupted",
                "its SLURM job was requeued (time limit or preemption); it continues when it runs again",
            )
        return ("completed", None) if error.code in (0, None) else ("failed", str(error.code))
    return "failed", first_line(error)[:500]


def _requeued_by_submitit(error: SystemExit) -> bool:
    """Whether submitit's handler of SLURM's warning signal (a time limit near, a preemption) raised ``error``
    after requeueing the job (``checkpoint_and_try_requeue``: ``scontrol requeue``, then ``sys.exit(-1)``)."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name == "checkpoint_and_try_requeue":
            return True
        frame = frame.tb_next
    return False


def _time_so_far(data: Mapping[str, Any]) -> float:
    """Seconds a run has run in its sessions so far: the finished ones' ``duration_s``, and a killed last
    session's time from its start to its last heartbeat."""
    total = float(data.get("duration_s") or 0.0)
    if data.get("ended") is None:  # the last session never finished (killed): count it to its last heartbeat
        resumes = data.get("resumes") or []
        began = parse_time(resumes[-1].get("started") if resumes else data.get("started"))
        beat = parse_time(data.get("heartbeat"))
        if began and beat:
            total += max(0.0, (beat - began).total_seconds())
    return round(total, 3)
