"""Run records (rnnlab.runs.record, .store) and the `rnnlab runs` command, built from records alone (no training)."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers import recipe_code
from rnnlab.cli import main
from rnnlab.runs import RunRecord, edit_record, find_records, git_state, interruptible, read_record, reserve_dir
from rnnlab.runs.atomic import write_json_atomic
from rnnlab.runs.commands import list as list_command
from rnnlab.runs.commands.rerun import entry_command
from rnnlab.runs.query import QueryError, parse_where
from rnnlab.runs.store import derive_status

ROOT = Path(__file__).resolve().parents[1]
COMMANDS_DIR = ROOT / "src" / "rnnlab" / "runs" / "commands"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def start(run_dir: Path, name: str = "gru-builtin-h8", **kwargs) -> RunRecord:
    options = dict(
        kind="train",
        name=name,
        task="mnist1d",
        command=[sys.executable, "src/train.py", "model=gru", "seed=7"],
        overrides=["model=gru", "seed=7"],
        params={"model": {"cell": "gru", "hidden_size": 8}, "seed": 7},
        cwd=run_dir.parent,
    )
    return RunRecord.start(run_dir, **{**options, **kwargs})


def stored(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=ENV, text=True, **kwargs)


# ------------------------------------------------------------------------------------------- lifecycle


SCHEMA_1 = """schema id name kind dir task parent status error epoch command overrides cwd started ended duration_s
heartbeat heartbeat_interval host pid slurm devices versions git params derived metrics checkpoints resumes tags note
debug env"""  # env came last, after records were written without it (readers take its absence as {})


def test_completed_record_holds_the_schema_and_leaves_no_temp_files(tmp_path):
    run_dir = tmp_path / "run"
    record = start(run_dir, devices=["cpu"], parent={"kind": "sweep", "dir": "/s", "study": "st", "trial": 3})
    running = read_record(run_dir)
    assert running["status"] == "running" and running["ended"] is None and running["duration_s"] is None
    record.update(epoch=3, metrics={"val/acc": 0.5})
    record.finish(
        "completed",
        metrics={"val/acc_best": 0.75, "val/loss": float("nan")},
        epoch=4,
        checkpoints={"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"},
    )
    data = read_record(run_dir)
    assert set(data) == set(SCHEMA_1.split())
    assert data["schema"] == 1 and len(data["id"]) == 32 and data["id"][12] == "4"  # a uuid4
    assert data["status"] == "completed" and data["error"] is None and data["epoch"] == 4
    assert data["params"] == {"model.cell": "gru", "model.hidden_size": 8, "seed": 7}
    assert data["metrics"] == {"val/acc": 0.5, "val/acc_best": 0.75, "val/loss": None}  # NaN: strict JSON null
    assert data["checkpoints"] == {"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"}
    assert data["parent"] == {"kind": "sweep", "dir": "/s", "study": "st", "trial": 3}
    assert data["dir"] == str(run_dir) and data["pid"] == os.getpid() and data["devices"] == ["cpu"]
    assert set(data["versions"]) == {"python", "torch", "pytorch-lightning", "hydra-core", "optuna", "rnnlab"}
    assert data["duration_s"] >= 0 and data["ended"] >= data["started"]
    assert data["command"][1:] == ["src/train.py", "model=gru", "seed=7"] and data["overrides"] == [
        "model=gru",
        "seed=7",
    ]
    assert data["git"] is None and data["resumes"] == [] and data["tags"] == [] and data["debug"] is False
    record.finish("failed", error="too late")  # idempotent: the first finish stands
    assert stored(run_dir)["status"] == "completed"
    assert sorted(p.name for p in run_dir.iterdir()) == [".run.json.lock", "run.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (run_dir / "run.json").stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file, not 0600


def test_start_rejects_unknown_kinds_and_updates_of_unknown_fields(tmp_path):
    with pytest.raises(ValueError, match="kind 'test' is not allowed; allowed: train, eval, generate"):
        start(tmp_path / "a", kind="test")
    record = start(tmp_path / "b")
    with pytest.raises(ValueError, match="'epochs' is not a record field"):
        record.update(epochs=3)
    record.finish("completed")
    with pytest.raises(FileExistsError, match="continue it with RunRecord.resume"):
        start(tmp_path / "b")  # a run directory holds one run


@pytest.mark.parametrize(
    "error, status, line",
    [
        (ValueError("\n  bad value for x\nsecond line"), "failed", "ValueError: bad value for x"),
        (KeyboardInterrupt(), "interrupted", None),
        (SystemExit("error: model='x' is not allowed"), "failed", "error: model='x' is not allowed"),
        (SystemExit(3), "failed", "3"),
        (SystemExit(0), "completed", None),
    ],
)
def test_guard_finishes_the_record_as_the_block_ends_and_reraises(tmp_path, error, status, line):
    record = start(tmp_path / "run")
    with pytest.raises(type(error)), record.guard():
        raise error
    data = read_record(tmp_path / "run")
    assert (data["status"], data["error"]) == (status, line) and data["ended"] is not None


def test_guard_reads_lightnings_exit_after_a_keyboard_interrupt_as_interrupted(tmp_path):
    record = start(tmp_path / "run")
    with pytest.raises(SystemExit), record.guard():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)  # what pytorch_lightning's trainer does on Ctrl-C after its graceful shutdown
    assert read_record(tmp_path / "run")["status"] == "interrupted"


def test_guard_reads_lightnings_sigterm_exception_as_interrupted(tmp_path):
    class SIGTERMException(SystemExit):  # pytorch_lightning.utilities.exceptions', raised by its loops on SIGTERM
        pass

    record = start(tmp_path / "run")
    with pytest.raises(SystemExit), record.guard():
        raise SIGTERMException  # no code: the process would exit 0
    assert read_record(tmp_path / "run")["status"] == "interrupted"


def test_guard_completes_a_block_that_ends_normally(tmp_path):
    with start(tmp_path / "run").guard() as record:
        record.update(epoch=1)
    assert read_record(tmp_path / "run")["status"] == "completed"


def test_interruptible_restores_the_previous_handler():
    before = signal.getsignal(signal.SIGTERM)
    with interruptible():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_ctrl_c_that_python_swallows_is_still_received_and_the_run_stops_at_its_next_batch():
    from rnnlab.app.session import RecordProgress
    from rnnlab.runs.signals import ctrl_c_received

    class RaisesInAFinalizer:
        def __del__(self) -> None:  # a KeyboardInterrupt raised here is printed and dropped by Python
            signal.raise_signal(signal.SIGINT)

    with interruptible():
        RaisesInAFinalizer()  # collected at once: the Ctrl-C lands in __del__
        assert ctrl_c_received()
        with pytest.raises(KeyboardInterrupt, match="the first was lost"):
            RecordProgress(record=None).on_train_batch_end()  # the run's next batch: stopped
    assert not ctrl_c_received()  # the next command in this process starts afresh
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


LIVE_RUN = """
import sys, time
from pathlib import Path
from rnnlab.runs import RunRecord, interruptible
record = RunRecord.start(Path(sys.argv[1]), kind="train", name="live", task="t", command=sys.argv, overrides=[],
                         params={}, cwd=sys.argv[1], heartbeat_interval=float(sys.argv[2]))
with interruptible(), record.guard():
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_ctrl_c_while_the_record_is_written_leaves_no_lock_held_and_the_run_still_finishes(tmp_path, monkeypatch):
    # Ctrl-C landing as the record's file lock is being released (the worst moment: once it landed there, the
    # lock stayed held by a lost descriptor and the run's last write waited for ever; ~1 in 80 under load).
    record = start(tmp_path / "run", heartbeat_interval=30.0)
    lock_file = str(tmp_path / "run" / ".run.json.lock")
    real_close, landed = os.close, []

    def close_with_ctrl_c(fd: int) -> None:
        if not landed and os.readlink(f"/proc/self/fd/{fd}") == lock_file:
            landed.append(fd)
            signal.raise_signal(signal.SIGINT)  # its handler runs here, before the descriptor is closed
        real_close(fd)

    monkeypatch.setattr(os, "close", close_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        record.update(epoch=3)
    monkeypatch.undo()
    assert landed and stored(tmp_path / "run")["epoch"] == 3  # the write went through, then Ctrl-C took effect
    fd = os.open(lock_file, os.O_RDWR)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: BlockingIOError if a descriptor still held it
    finally:
        os.close(fd)
    record.finish("interrupted")
    assert read_record(tmp_path / "run")["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back


def test_a_lock_held_for_ever_delays_a_write_but_never_stops_it(tmp_path, monkeypatch):
    import fcntl

    from rnnlab.runs import atomic

    record = start(tmp_path / "run", heartbeat_interval=30.0)
    monkeypatch.setattr(atomic, "LOCK_WAIT_S", 0.3)
    holder = os.open(tmp_path / "run" / ".run.json.lock", os.O_RDWR)  # e.g. a hung `rnnlab runs tag`
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        record.finish("completed")
        assert time.monotonic() - started >= 0.3
    finally:
        os.close(holder)
    assert stored(tmp_path / "run")["status"] == "completed"


def test_sigterm_reads_as_interrupted(tmp_path):
    process = python(LIVE_RUN, str(tmp_path / "run"), "30", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == "ready"
    assert read_record(tmp_path / "run")["status"] == "running"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0 and "Terminated: signal 15 (SIGTERM)" in stderr  # a KeyboardInterrupt
    data = read_record(tmp_path / "run")
    assert data["status"] == "interrupted" and data["ended"] is not None


def test_a_sigkilled_run_reads_as_killed_though_its_file_says_running(tmp_path):
    process = python(LIVE_RUN, str(tmp_path / "run"), "30", stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == "ready"
    assert read_record(tmp_path / "run")["status"] == "running"
    process.kill()
    process.wait(timeout=30)
    assert stored(tmp_path / "run")["status"] == "running"
    assert read_record(tmp_path / "run")["status"] == "killed"


def test_stale_heartbeat_reads_as_killed_and_a_live_heartbeat_from_another_host_as_running(tmp_path):
    record = start(tmp_path / "run", heartbeat_interval=1.0)
    record._stop.set()  # freeze the heartbeat, as a hung or vanished process would
    now = datetime.now(timezone.utc)
    data = {**stored(tmp_path / "run"), "host": "elsewhere", "pid": 1}
    assert derive_status({**data, "heartbeat": iso(now - timedelta(seconds=2))}, now=now) == "running"
    assert derive_status({**data, "heartbeat": iso(now - timedelta(seconds=4))}, now=now) == "killed"
    edit_record(tmp_path / "run", lambda d: d.update(heartbeat=iso(now - timedelta(seconds=10))))
    assert read_record(tmp_path / "run")["status"] == "killed"


def test_a_pid_reused_by_a_process_started_after_the_heartbeat_reads_as_killed(tmp_path):
    heartbeat = datetime.now(timezone.utc) - timedelta(seconds=30)
    newer = subprocess.Popen(["sleep", "30"])  # stands for an unrelated process that got the run's pid
    try:
        data = {
            "status": "running",
            "host": "h",
            "pid": newer.pid,
            "heartbeat": iso(heartbeat),
            "heartbeat_interval": 1e6,
        }
        assert derive_status(data, host="h") == "killed"
        alive = {**data, "pid": os.getpid(), "heartbeat": iso(datetime.now(timezone.utc))}
        assert derive_status(alive, host="h") == "running"  # this process started before that heartbeat
    finally:
        newer.kill()
        newer.wait()


def test_heartbeat_is_rewritten_until_the_run_finishes(tmp_path):
    record = start(tmp_path / "run", heartbeat_interval=0.05)
    first = stored(tmp_path / "run")["heartbeat"]
    deadline = time.time() + 10
    while stored(tmp_path / "run")["heartbeat"] == first and time.time() < deadline:
        time.sleep(0.02)
    assert stored(tmp_path / "run")["heartbeat"] > first
    record.finish("completed")
    last = stored(tmp_path / "run")["heartbeat"]
    time.sleep(0.2)
    assert stored(tmp_path / "run")["heartbeat"] == last and not record._thread.is_alive()


def test_a_tag_added_while_the_run_is_live_survives_its_heartbeats_and_updates(tmp_path):
    record = start(tmp_path / "run", heartbeat_interval=0.01)
    assert main(["runs", "tag", str(tmp_path / "run"), "keep"]) == 0
    assert main(["runs", "note", str(tmp_path / "run"), "look at this"]) == 0
    time.sleep(0.2)  # ~20 heartbeat writes
    record.update(epoch=2)
    record.finish("completed")
    data = stored(tmp_path / "run")
    assert data["tags"] == ["keep"] and data["note"] == "look at this" and data["epoch"] == 2


def test_resume_appends_a_session_and_keeps_the_original_command(tmp_path):
    first = start(tmp_path / "run")
    first.finish("interrupted", epoch=1)
    original = stored(tmp_path / "run")
    command = ["python", "src/train.py", "ckpt_path=x.ckpt"]
    resumed = RunRecord.resume(tmp_path / "run", command=command, overrides=["ckpt_path=x.ckpt"], cwd=tmp_path)
    assert read_record(tmp_path / "run")["status"] == "running"
    resumed.finish("completed", epoch=3)
    data = stored(tmp_path / "run")
    assert (data["command"], data["overrides"], data["started"], data["id"]) == (
        original["command"],
        original["overrides"],
        original["started"],
        original["id"],
    )
    (entry,) = data["resumes"]
    assert entry["command"] == ["python", "src/train.py", "ckpt_path=x.ckpt"] and entry["status"] == "completed"
    assert entry["ended"] == data["ended"] and entry["started"] > original["started"] and entry["pid"] == os.getpid()
    assert data["status"] == "completed" and data["epoch"] == 3 and data["duration_s"] >= 0


def test_resume_without_a_record_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run.json in"):
        RunRecord.resume(tmp_path, command=[], overrides=[])


# ------------------------------------------------------------------------------------------- git


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.1\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "first")
    return repo


def test_git_state_of_a_clean_checkout_has_no_patch(tmp_path, repo):
    start(tmp_path / "run", cwd=repo).finish("completed")
    commit = git(repo, "rev-parse", "HEAD").strip()
    assert stored(tmp_path / "run")["git"] == {"commit": commit, "dirty": False, "patch": None}
    assert not (tmp_path / "run" / "git.patch").exists()


def test_a_dirty_checkout_saves_its_changes_as_git_patch(tmp_path, repo):
    (repo / "train.py").write_text("lr = 0.2\n")
    (repo / "new.py").write_text("x = 1\n")
    start(tmp_path / "run", cwd=repo).finish("completed")
    assert stored(tmp_path / "run")["git"]["dirty"] is True
    assert stored(tmp_path / "run")["git"]["patch"] == "git.patch"
    patch = (tmp_path / "run" / "git.patch").read_text()
    assert "-lr = 0.1" in patch and "+lr = 0.2" in patch and "untracked, not in this patch: new.py" in patch
    git(repo, "stash", "-q")
    git(repo, "apply", "--check", str(tmp_path / "run" / "git.patch"))  # the patch recreates the change


def test_a_resumed_session_records_its_own_checkout(tmp_path, repo):
    start(tmp_path / "run", cwd=repo).finish("interrupted")
    (repo / "train.py").write_text("lr = 0.5\n")
    RunRecord.resume(tmp_path / "run", command=["python"], overrides=[], cwd=repo).finish("completed")
    data = stored(tmp_path / "run")
    assert data["git"]["dirty"] is False and data["git"]["patch"] is None  # the original session's
    assert data["resumes"][0]["git"]["dirty"] is True and data["resumes"][0]["git"]["patch"] == "git.resume1.patch"
    assert "+lr = 0.5" in (tmp_path / "run" / "git.resume1.patch").read_text()
    shown = cli("show", str(tmp_path / "run"), cwd=tmp_path).stdout
    assert f"(git {git(repo, 'rev-parse', 'HEAD')[:12]} dirty)" in shown.splitlines()[-1]


def test_outside_git_or_without_git_the_git_field_is_null(tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) is None
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert git_state(ROOT) is None
    start(tmp_path / "run", cwd=ROOT).finish("completed")
    assert stored(tmp_path / "run")["git"] is None


# ------------------------------------------------------------------------------------------- run dirs


RESERVE = """
import os, sys, time
from rnnlab.runs import reserve_dir
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
print(reserve_dir(sys.argv[1]))
"""


def test_reserve_dir_gives_processes_started_at_once_distinct_directories(tmp_path):
    parent = tmp_path / "seed42"
    for taken in ("version_0", "version_2", "version_x"):
        (parent / taken).mkdir(parents=True)
    go = tmp_path / "go"
    processes = [python(RESERVE, str(parent), str(go), stdout=subprocess.PIPE) for _ in range(10)]
    assert [process.stdout.readline().strip() for process in processes] == ["ready"] * 10  # all at the line
    go.touch()
    dirs = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert len(set(dirs)) == 10 and all(Path(d).is_dir() and Path(d).parent == parent for d in dirs)
    assert sorted(int(Path(d).name[8:]) for d in dirs) == list(range(3, 13))
    assert reserve_dir(parent, prefix="eval_") == parent / "eval_0"


def test_find_records_walks_nested_runs_but_not_checkpoints_or_hydra_dirs(tmp_path):
    start(tmp_path / "logs" / "a" / "version_0").finish("completed")
    start(tmp_path / "logs" / "a" / "version_0" / "eval" / "version_0", kind="eval").finish("completed")
    for skipped in ("checkpoints", ".hydra"):  # a stray run.json there is not a run
        (tmp_path / "logs" / "a" / "version_0" / skipped).mkdir()
        write_json_atomic(tmp_path / "logs" / "a" / "version_0" / skipped / "run.json", {"status": "completed"})
    kinds = sorted(r["kind"] for r in find_records(tmp_path / "logs", tmp_path / "missing"))
    assert kinds == ["eval", "train"]


def test_a_corrupt_run_json_reads_as_unreadable(tmp_path):
    start(tmp_path / "run").finish("completed")
    text = (tmp_path / "run" / "run.json").read_text()
    (tmp_path / "run" / "run.json").write_text(text[: len(text) // 2])  # truncated
    data = read_record(tmp_path / "run")
    assert data["status"] == "unreadable" and data["error"].startswith("run.json: JSONDecodeError")


# ------------------------------------------------------------------------------------------- the CLI


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnlab.runs", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60
    )


def one_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def make_run(root: Path, name: str, cell: str, seed: int, status: str, acc: float | None, **kwargs) -> dict:
    run_dir = root / "logs" / "mnist1d" / name / f"seed{seed}" / "version_0"
    overrides = [f"model={cell}", f"seed={seed}", "trainer.max_epochs=2", "tags=[a, b]"]
    record = start(
        run_dir,
        name=name,
        command=["/usr/bin/python3", "src/train.py", *overrides],
        overrides=overrides,
        params={"model.cell": cell, "model.hidden_size": 8, "seed": seed},
        **kwargs,
    )
    if status == "running":
        record._stop.set()  # no heartbeat thread outliving the test; the record stays fresh for 90 s
        return record.data
    record.finish(
        status,
        metrics={} if acc is None else {"val/acc_best": acc, "val/loss": 1 - acc},
        error="ValueError: boom" if status == "failed" else None,
    )
    return record.data


@pytest.fixture
def runs(tmp_path) -> dict[str, dict]:
    """Four listed runs (gru/lstm/vanilla, one failed without metrics) and one debug run."""
    made = {}
    for name, cell, seed, status, acc in [
        ("gru-builtin-h8", "gru", 1, "completed", 0.91),
        ("lstm-builtin-h8", "lstm", 1, "completed", 0.95),
        ("vanilla-builtin-h8", "vanilla", 2, "completed", 0.72),
        ("gru-custom-h8", "gru", 3, "failed", None),
    ]:
        made[name] = make_run(tmp_path, name, cell, seed, status, acc)
        time.sleep(0.002)  # distinct start times
    made["debug"] = make_run(tmp_path, "debug-run", "gru", 9, "completed", 0.1, debug=True)
    return made


def listed_names(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [row["name"] for row in json.loads(done.stdout)]


def test_list_shows_newest_first_with_the_params_that_vary_and_the_metrics(tmp_path, runs):
    done = cli(cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    header, *rows = done.stdout.strip().splitlines()
    # The settings that vary (short names) and the key metrics; the rest with --wide.
    assert header.split() == ["id", "name", "status", "cell", "seed", "val/acc_best"]
    assert [row.split()[1] for row in rows] == [
        "gru-custom-h8",
        "vanilla-builtin-h8",
        "lstm-builtin-h8",
        "gru-builtin-h8",
    ]
    assert rows[2].split()[0] == runs["lstm-builtin-h8"]["id"][:8] and "0.95" in rows[2] and "lstm" in rows[2]
    assert "debug-run" in cli("--all", cwd=tmp_path).stdout  # debug runs only with --all


def test_on_a_terminal_the_listing_is_a_rich_table_with_the_same_columns(tmp_path, runs, monkeypatch):
    from rich.console import Console
    from rich.text import Text

    piped = cli("--dir", str(tmp_path / "logs"), cwd=tmp_path).stdout.splitlines()
    terminal = io.StringIO()
    monkeypatch.setattr(list_command, "on_terminal", lambda: True)
    monkeypatch.setattr(list_command, "console", lambda: Console(file=terminal, width=300, color_system="standard"))
    assert main(["runs", "--dir", str(tmp_path / "logs")]) == 0
    assert "\x1b[" in terminal.getvalue()  # styled
    plain = Text.from_ansi(terminal.getvalue()).plain.splitlines()
    assert [line.split() for line in plain if line.strip()] == [line.split() for line in piped]
    terminal.seek(0)
    terminal.truncate()
    assert main(["runs", "--dir", str(tmp_path / "logs"), "--limit", "2"]) == 0
    assert Text.from_ansi(terminal.getvalue()).plain.strip().endswith("2 of 4 runs (--limit 0 lists all)")


def test_a_table_too_wide_for_the_terminal_leaves_out_whole_columns_and_elides_names_only_for_essential_ones():
    from rnnlab.runs.columns import Column, fit

    def columns() -> list[Column]:
        return [
            Column("id", "id", ["0123abcd"]),
            Column("name", "name", ["n" * 30]),
            Column("status", "status", ["completed"]),
            Column("lr", "lr", ["0.0050"]),
            Column("x", "x" * 40, ["1"]),
            Column("val/acc", "val/acc", ["0.9500"]),
        ]

    chosen = fit(columns(), width=80)  # x does not fit and val/acc is not essential: left out whole
    assert [c.key for c in chosen] == ["id", "name", "status", "lr", "val/acc"]
    assert chosen[1].cells == ["n" * 30]
    chosen = fit(columns(), width=60, essential={"x"})  # not even with the name at its narrowest (20)
    assert [c.key for c in chosen] == ["id", "name", "status", "lr"]
    chosen = fit(columns(), width=91, essential={"x"})  # the name elided to 20 makes room for x, not val/acc
    assert [c.key for c in chosen] == ["id", "name", "status", "lr", "x"]
    assert chosen[1].cells == ["n" * 9 + "…" + "n" * 10]


def test_list_filters_sorts_and_limits(tmp_path, runs):
    def names(*args: str) -> list[str]:
        return listed_names(cli("--json", *args, cwd=tmp_path))

    assert names("--where", "model.cell=gru") == ["gru-custom-h8", "gru-builtin-h8"]
    assert names("--where", "model.cell=gru and val/acc_best>0.9") == ["gru-builtin-h8"]
    assert names("--where", "val/acc_best>=0.91", "--where", "seed<2") == ["lstm-builtin-h8", "gru-builtin-h8"]
    assert names("--where", "seed!=1", "--sort", "seed") == ["vanilla-builtin-h8", "gru-custom-h8"]
    assert names("--where", "status=failed") == names("--status", "failed") == ["gru-custom-h8"]
    assert names("--status", "failed,completed", "--limit", "2") == ["gru-custom-h8", "vanilla-builtin-h8"]
    assert names("--sort", "-val/acc_best") == [
        "lstm-builtin-h8",
        "gru-builtin-h8",
        "vanilla-builtin-h8",
        "gru-custom-h8",
    ]
    assert names("--sort", "val/acc_best") == [
        "vanilla-builtin-h8",
        "gru-builtin-h8",
        "lstm-builtin-h8",
        "gru-custom-h8",
    ]
    assert names("--sort", "name", "--limit", "0", "--all")[0] == "debug-run"
    edit_record(
        runs["lstm-builtin-h8"]["dir"], lambda d: d.update(status="running", heartbeat="2020-01-01T00:00:00+00:00")
    )
    assert names("--status", "killed") == ["lstm-builtin-h8"]
    assert names("--where", "status=killed") == ["lstm-builtin-h8"]
    assert "killed (recorded as running" in cli("show", runs["lstm-builtin-h8"]["dir"], cwd=tmp_path).stdout


def test_list_as_json_and_csv_has_every_param_and_metric(tmp_path, runs):
    rows = json.loads(cli("--json", "--where", "model.cell=lstm", cwd=tmp_path).stdout)
    assert [row["id"] for row in rows] == [runs["lstm-builtin-h8"]["id"]]
    assert rows[0]["params"] == {"model.cell": "lstm", "model.hidden_size": 8, "seed": 1}
    assert rows[0]["metrics"]["val/acc_best"] == 0.95
    table = list(csv.DictReader(io.StringIO(cli("--csv", cwd=tmp_path).stdout)))
    assert [row["name"] for row in table][0] == "gru-custom-h8" and len(table) == 4
    lstm = next(row for row in table if row["name"] == "lstm-builtin-h8")
    assert (lstm["model.hidden_size"], lstm["model.cell"], float(lstm["val/acc_best"]), lstm["status"]) == (
        "8",
        "lstm",
        0.95,
        "completed",
    )
    assert next(row for row in table if row["status"] == "failed")["val/acc_best"] == ""


def test_show_and_diff(tmp_path, runs):
    gru, lstm = runs["gru-builtin-h8"], runs["lstm-builtin-h8"]
    done = cli("show", gru["id"][:6], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert gru["id"] in done.stdout and "model.cell" in done.stdout and "val/acc_best" in done.stdout
    assert json.loads(cli("show", gru["dir"], "--json", cwd=tmp_path).stdout) == read_record(gru["dir"])
    lines = cli("diff", gru["id"][:8], lstm["dir"], cwd=tmp_path).stdout.splitlines()
    assert gru["id"][:8] in lines[0] and lstm["id"][:8] in lines[0]
    assert ["model.cell", "gru", "lstm"] in [line.split() for line in lines]
    assert not any(line.split()[:1] == ["model.hidden_size"] for line in lines)  # equal params are left out
    assert ["val/acc_best", "0.91", "0.95"] in [line.split() for line in lines]


def test_rerun_prints_the_entry_point_with_the_original_overrides(tmp_path, runs):
    gru = runs["gru-builtin-h8"]
    command = ["python", "src/train.py", "ckpt_path=c"]
    RunRecord.resume(gru["dir"], command=command, overrides=["ckpt_path=c"], cwd=tmp_path).finish("completed")
    done = cli("rerun", gru["id"][:8], cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""  # no git recorded: nothing to warn about
    assert done.stdout.strip() == "python src/train.py model=gru seed=1 trainer.max_epochs=2 'tags=[a, b]'"
    assert shlex.split(done.stdout)[2:] == gru["overrides"]


@pytest.mark.parametrize(
    "command, entry",
    [
        (["/venv/bin/python3", "src/train.py", "-m", "model=gru"], ["/venv/bin/python3", "src/train.py"]),
        (["python", "-u", "-X", "dev", "-m", "rnnlab.x", "a=1"], ["python", "-u", "-X", "dev", "-m", "rnnlab.x"]),
        (["/venv/bin/rnnlab-train", "model=gru"], ["/venv/bin/rnnlab-train"]),
        ([], []),
    ],
)
def test_the_entry_point_of_a_recorded_command_leaves_out_its_arguments(command, entry):
    assert entry_command(command) == entry


def test_rerun_warns_in_one_line_when_the_checkout_differs(tmp_path, repo, monkeypatch):
    monkeypatch.chdir(repo)  # the run's command is typed in the checkout, where rerun compares the state
    run = make_run(tmp_path, "gru-builtin-h8", "gru", 1, "completed", 0.9, cwd=repo)
    assert cli("rerun", run["id"][:8], cwd=tmp_path).stderr == ""  # same commit, clean: nothing to say
    (repo / "train.py").write_text("lr = 0.3\n")
    done = cli("rerun", run["id"][:8], cwd=tmp_path)
    (warning,) = done.stderr.strip().splitlines()
    assert warning.startswith("warning: this checkout is") and "(dirty)" in warning and "(clean)" in warning
    assert done.stdout.startswith("python src/train.py model=gru")


def test_rerun_exec_runs_the_command_where_it_was_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "script.py").write_text(
        "import sys, pathlib; pathlib.Path('ran.txt').write_text(' '.join(sys.argv[1:]))\n"
    )
    record = RunRecord.start(
        tmp_path / "logs" / "r",
        kind="eval",
        name="script",
        task="t",
        command=["python3", "-u", "script.py", "x=1", "-m"],
        overrides=["x=1", "y='two words'"],
        params={},
    )
    record.finish("completed")
    elsewhere = tmp_path / "elsewhere"  # rerun from another directory: the script runs where it was typed
    elsewhere.mkdir()
    done = cli("rerun", record.id[:8], "--exec", "--dir", str(tmp_path / "logs"), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert shlex.split(done.stdout) == ["python", "-u", "script.py", "x=1", "y='two words'"]
    assert (tmp_path / "ran.txt").read_text() == "x=1 y='two words'"


def test_a_run_made_under_the_budget_says_so_and_reruns_under_it(tmp_path, runs, monkeypatch):
    # RNNLAB_BUDGET=tiny shrank the run after its command was typed: the command alone would recreate a
    # full-size run, so the record keeps the variable, and show, diff and rerun (printed and --exec) carry it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "script.py").write_text(
        "import os, pathlib; pathlib.Path('ran.txt').write_text(os.environ.get('RNNLAB_BUDGET', 'none'))\n"
    )
    record = start(
        tmp_path / "logs" / "tiny",
        command=["python3", "script.py", "x=1"],
        overrides=["x=1"],
        env={"RNNLAB_BUDGET": "tiny"},
    )
    record.finish("completed")
    assert stored(record.dir)["env"] == {"RNNLAB_BUDGET": "tiny"}
    assert "RNNLAB_BUDGET" not in ENV  # the rerun gets it from the record, not from here
    done = cli("rerun", record.id[:8], "--exec", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "RNNLAB_BUDGET=tiny python script.py x=1"
    assert (tmp_path / "ran.txt").read_text() == "tiny"
    shown = cli("show", record.id[:8], cwd=tmp_path).stdout.splitlines()
    assert ["env", "RNNLAB_BUDGET=tiny"] in [line.split() for line in shown]
    lines = cli("diff", record.id[:8], runs["gru-builtin-h8"]["id"][:8], cwd=tmp_path).stdout.splitlines()
    assert ["env", "RNNLAB_BUDGET=tiny", "-"] in [line.split() for line in lines]
    # A run without it (every run made so far; records older than the field have none): nothing is added.
    assert stored(Path(runs["gru-builtin-h8"]["dir"]))["env"] == {}
    plain = cli("show", runs["gru-builtin-h8"]["id"][:8], cwd=tmp_path).stdout.splitlines()
    assert ["env"] not in [line.split()[:1] for line in plain]
    assert cli("rerun", runs["gru-builtin-h8"]["id"][:8], cwd=tmp_path).stdout.startswith("python src/train.py")


def test_tag_and_note_edit_the_record(tmp_path, runs):
    gru = runs["gru-builtin-h8"]
    assert cli("tag", gru["id"][:8], "baseline", cwd=tmp_path).returncode == 0
    assert cli("tag", gru["id"][:8], "paper", cwd=tmp_path).returncode == 0
    assert cli("note", gru["id"][:8], "the one in the README", cwd=tmp_path).returncode == 0
    assert stored(Path(gru["dir"]))["tags"] == ["baseline", "paper"]
    assert stored(Path(gru["dir"]))["note"] == "the one in the README"
    assert listed_names(cli("--json", "--where", "tag=paper", cwd=tmp_path)) == ["gru-builtin-h8"]
    assert cli("tag", gru["id"][:8], "paper", "--remove", cwd=tmp_path).returncode == 0
    assert stored(Path(gru["dir"]))["tags"] == ["baseline"]
    one_error(cli("tag", gru["id"][:8], "paper", "--remove", cwd=tmp_path), "has no tag 'paper'", "baseline")


def test_rm_prints_what_it_would_delete_and_deletes_only_with_yes(tmp_path, runs):
    gru, failed = runs["gru-builtin-h8"], runs["gru-custom-h8"]
    done = cli("rm", "--where", "model.cell=gru", cwd=tmp_path)
    assert done.returncode == 0 and "would delete" in done.stdout and failed["dir"] in done.stdout
    assert Path(gru["dir"]).is_dir() and Path(failed["dir"]).is_dir()
    done = cli("rm", gru["id"][:8], "--yes", cwd=tmp_path)
    assert done.returncode == 0 and not Path(gru["dir"]).exists() and Path(failed["dir"]).is_dir()
    assert "gru-builtin-h8" not in listed_names(cli("--json", cwd=tmp_path))


def test_rm_refuses_a_running_run_unless_forced(tmp_path):
    live = make_run(tmp_path, "live", "gru", 1, "running", None)
    one_error(cli("rm", live["id"][:8], "--yes", cwd=tmp_path), "is running", "--force")
    assert Path(live["dir"]).is_dir()
    assert cli("rm", live["id"][:8], "--yes", "--force", cwd=tmp_path).returncode == 0
    assert not Path(live["dir"]).exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["show", "ffff"], ["RUN 'ffff' matches no run id"]),
        (["show", "abc"], ["RUN 'abc' is neither a run directory nor an id prefix"]),
        (["show", "abcd"], ["RUN 'abcd' is ambiguous: 2 runs match"]),
        (["diff", "abcd0", "nope/dir"], ["RUN 'nope/dir' is neither"]),
        (["--where", "model.cell gru"], ["--where 'model.cell gru' is not a condition", "KEY OP VALUE"]),
        (
            ["--where", "model.cel=gru"],
            ["--where key 'model.cel' is not a param, metric or record field", "model.cell"],
        ),
        (["--sort", "-val/accuracy"], ["--sort key 'val/accuracy'", "val/acc_best"]),
        (["--limit", "-1"], ["--limit: '-1' is not allowed", ">= 0"]),
        (["--status", "done"], ["--status 'done' is not allowed; allowed: running, completed"]),
        (["--dir", "missing"], ["--dir 'missing' does not exist"]),
        (["--json", "--csv"], ["--json and --csv"]),
        (["rm"], ["rm needs RUN arguments"]),
        (["lsit"], ["unrecognized arguments: lsit"]),
    ],
)
def test_user_mistakes_are_one_error_line_with_exit_code_2(tmp_path, args, fragments):
    for number, prefix in enumerate(("abcd0", "abcd1")):
        run = make_run(tmp_path, f"run{number}", "gru", number, "completed", 0.5)
        edit_record(run["dir"], lambda d, prefix=prefix: d.update(id=prefix + d["id"][5:]))
    one_error(cli(*args, cwd=tmp_path), *fragments)


def test_a_corrupt_record_does_not_break_listing(tmp_path, runs):
    broken = Path(runs["lstm-builtin-h8"]["dir"]) / "run.json"
    broken.write_text('{"schema": 1, "id": "12')
    done = cli(cwd=tmp_path)
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 1 + 3
    assert done.stderr.startswith("warning: 1 unreadable run.json skipped") and done.stderr.count("\n") == 1
    rows = json.loads(cli("--json", "--status", "unreadable", cwd=tmp_path).stdout)
    assert [row["dir"] for row in rows] == [str(broken.parent)]
    assert cli("rm", str(broken.parent), "--yes", cwd=tmp_path).returncode == 0 and not broken.exists()


def test_dirs_and_rnnlab_root_choose_where_to_look(tmp_path, runs, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    make_run(elsewhere, "far-away", "gru", 1, "completed", 0.5)
    assert listed_names(cli("--json", "--dir", str(elsewhere), cwd=tmp_path)) == ["far-away"]
    monkeypatch.setenv("RNNLAB_ROOT", str(elsewhere))
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "--json"]) == 0
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == ["far-away"]


def test_where_compares_numbers_as_numbers_and_the_rest_as_text():
    record = {"params": {"model.hidden_size": 10, "model.cell": "gru", "debug_flag": True, "lr": "1e-3"}}
    assert all(clause.matches(record) for clause in parse_where("model.hidden_size>9 and model.hidden_size<=10"))
    assert all(clause.matches(record) for clause in parse_where("model.cell=='gru' and debug_flag=True and lr=0.001"))
    assert not any(clause.matches(record) for clause in parse_where("model.cell>h AND missing=1"))
    assert parse_where("missing!=1")[0].matches(record)  # a run without the key differs from any value
    with pytest.raises(QueryError, match="a tag takes = or !="):
        parse_where("tag>a")


def test_the_package_stays_a_light_leaf():
    heavy = {"torch", "pytorch_lightning", "lightning", "hydra", "optuna", "omegaconf"}
    code = (
        "import sys, rnnlab.cli, rnnlab.runs.cli; rnnlab.runs.cli.subcommands(); print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    modules = done.stdout.split()
    assert not [m for m in modules if m.split(".")[0] in heavy]
    assert [m for m in modules if m.startswith("rnnlab")] == [
        "rnnlab",
        "rnnlab.cli",
        "rnnlab.errors",  # the one-line error helpers, a leaf
        "rnnlab.runs",
        "rnnlab.runs.atomic",  # atomic writes and file locks (stdlib)
        "rnnlab.runs.cli",
        "rnnlab.runs.columns",
        "rnnlab.runs.commands",
        *(f"rnnlab.runs.commands.{path.stem}" for path in sorted(COMMANDS_DIR.glob("[!_]*.py"))),
        "rnnlab.runs.environment",  # host, versions, git (stdlib)
        "rnnlab.runs.formatting",
        "rnnlab.runs.process",  # whether a process still runs (stdlib), a leaf
        "rnnlab.runs.query",
        "rnnlab.runs.record",
        "rnnlab.runs.scheduler",  # the SLURM job a process runs in (stdlib)
        "rnnlab.runs.settings",
        "rnnlab.runs.signals",  # deferred signals, SIGTERM as an interruption (stdlib)
        "rnnlab.runs.store",
        "rnnlab.runs.subcommand",
    ]


def test_the_rnnlab_command_dispatches_on_its_first_word(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["runs", "--help"])
    assert exit_.value.code == 0 and "rerun" in capsys.readouterr().out
    assert main(["--help"]) == 0 and "usage: rnnlab {runs}" in capsys.readouterr().out
    assert main([]) == 2 and capsys.readouterr().err == "error: a command is needed; allowed: runs (rnnlab --help)\n"
    assert main(["study"]) == 2
    assert capsys.readouterr().err == "error: command 'study' is not allowed; allowed: runs (rnnlab --help)\n"


def test_a_subcommand_added_as_the_recipe_says_runs(tmp_path, runs, monkeypatch, capsys):
    from rnnlab.runs import commands
    from rnnlab.runs.subcommand import REGISTRY

    # The recipe's file, in a directory of the commands package (as src/rnnlab/runs/commands/ is), nothing else.
    folder = tmp_path / "more_commands"
    folder.mkdir()
    (folder / "count.py").write_text(recipe_code("Adding a `rnnlab runs` subcommand"))
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(folder)])
    logs = str(tmp_path / "logs")
    try:
        assert main(["runs", "count", "--dir", logs, "--where", "model.cell=gru"]) == 0
        assert capsys.readouterr().out == "2\n"
        assert main(["runs", "count", "--dir", logs, "--all"]) == 0 and capsys.readouterr().out == "5\n"
        assert main(["runs", "count", "--dir", logs, "--where", "nope=1"]) == 2
        assert len(capsys.readouterr().err.splitlines()) == 1
        with pytest.raises(SystemExit):
            main(["runs", "--help"])
        usage = capsys.readouterr().out
        assert "{list,show,diff,rerun,tag,note,rm,count}" in usage and "how many runs match" in usage
    finally:
        REGISTRY.pop("count", None)
        sys.modules.pop("rnnlab.runs.commands.count", None)


# ------------------------------------------------------------------------------------------- benchmark


def test_listing_benchmark_at_a_tiny_size():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import runs_listing
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = runs_listing.run(records=30, repeats=1)
    assert [row[0].split(" (")[0] for row in rows][2:] == ["python -m rnnlab.runs --limit 20"] * 2
    assert all(seconds > 0 for _, seconds, _ in rows) and rows[0][2] == 1.0
    assert runs_listing.markdown(rows).splitlines()[0] == "| " + " | ".join(runs_listing.COLUMNS) + " |"


def test_a_running_resumed_runs_duration_is_its_sessions_time_not_the_time_since_it_began():
    from rnnlab.runs.formatting import run_duration

    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    fresh = {"status": "running", "started": "2026-12-06T11:59:00+00:00", "duration_s": None}
    assert run_duration(fresh, now=now) == run_duration({"duration_s": 60.0}) + "…"
    # trained 10 minutes a week ago, resumed 30 seconds ago: 10 min 30 s so far, not a week
    resumed = {
        "status": "running", "started": "2026-11-29T12:00:00+00:00", "duration_s": 600.0,
        "resumes": [{"started": "2026-12-06T11:59:30+00:00"}],
    }  # fmt: skip
    assert run_duration(resumed, now=now) == run_duration({"duration_s": 630.0}) + "…"


def test_a_sigterm_python_swallows_in_a_finalizer_is_delivered_again(capfd):
    """SIGTERM handled while a finalizer runs (a garbage-collection callback, ``__del__``): Python swallows the
    handler's exception; the command must stop all the same (a sweep once went on for a minute), quietly."""

    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)  # its handler runs here, inside the finalizer
            sum(range(1000))  # bytecode for the handler to run in

    hook, reached_after = sys.unraisablehook, False
    with pytest.raises(KeyboardInterrupt) as raised, interruptible():
        Finalized()  # collected at once: __del__ runs, its exception swallowed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the interruption arrives here, in the code the finalizer interrupted
            time.sleep(0.001)
        reached_after = True
    assert not reached_after and raised.type.__name__ == "Terminated"
    assert sys.unraisablehook is hook and "Exception ignored" not in capfd.readouterr().err
