"""One writer per run (issue 23): a second command on a run that another process writes is refused in one line
naming that process; two resumes started at once, one wins; a hold whose process died is taken over; a
``hydra.run.dir`` that is empty or holds a run is refused before anything is touched.

The live run is held mid-training by the pausing callback (tests/fixtures/pausing.py), not timed by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers import ROOT, finish, pause_env, read_scalars, start_script, tiny, wait_for
from inprocess import run_main
from rnnlab.runs.hold import HOLD_FILE, RunHeld, RunHold, live_holder
from rnnlab.runs.process import hostname
from rnnlab.runs.store import read_record

ARGS = [
    "model=vanilla",
    *tiny(max_epochs=2, limit_val_batches=1, limit_test_batches=1),
    "+callbacks.pause._target_=pausing.PauseAt",
]
IN_USE = "is in use by another command (pid {pid} on {host} since "


def command(
    script: str, args: list[str], root: Path, pause: Path | None = None, at: str = "", cwd: Path = ROOT
) -> subprocess.Popen:
    return start_script(script, args, pause_env(root, pause, at), cwd)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def digests(run_dir: Path) -> dict[str, str]:
    """Every file of a run; run.json and the hold are rewritten by their heartbeats, the record lock is shared."""
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in run_dir.rglob("*")
        if path.is_file() and path.name not in (".run.json.lock", "run.json", HOLD_FILE)
    }


def only_run_dir(root: Path) -> Path:
    (run_dir,) = [path.parent for path in (root / "logs").rglob("run.json") if path.parent.name.startswith("version_")]
    return run_dir


# ------------------------------------------------------------------------------------------- a live run


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, data_dir) -> dict:
    """A run held after epoch 0's checkpoint while a resume of it, a new run with its directory as
    hydra.run.dir and an eval of its checkpoint are run (in this process, one after another: the live run is
    the other process); then let go to finish."""
    root = tmp_path_factory.mktemp("live")
    marker = root / "paused"
    args = [*ARGS, f"paths.data_dir={data_dir}"]
    live = command("train.py", args, root, marker, "checkpoint:0")
    wait_for(marker, live)
    run_dir = only_run_dir(root)
    last = run_dir / "checkpoints" / "last.ckpt"
    before = digests(run_dir)
    others = [
        run_main([str(ROOT / "src" / script), *script_args], env=pause_env(root), cwd=str(ROOT))
        for script, script_args in (
            ("train.py", [f"ckpt_path={last}"]),
            ("train.py", [*args, f"hydra.run.dir={run_dir}"]),
            ("eval.py", [f"ckpt_path={last}"]),
        )
    ]
    during = digests(run_dir)
    marker.unlink()
    return dict(
        run_dir=run_dir, pid=live.pid, others=others, before=before, during=during, live=finish(live), root=root
    )


def test_a_resume_of_a_run_being_trained_is_refused_naming_the_live_process(live_run):
    line = one_error_line(live_run["others"][0])
    assert f"{live_run['run_dir']} " + IN_USE.format(pid=live_run["pid"], host=hostname()) in line


def test_a_new_run_into_the_directory_of_a_live_run_is_refused_naming_it(live_run):
    line = one_error_line(live_run["others"][1])
    assert IN_USE.format(pid=live_run["pid"], host=hostname()) in line


def test_eval_of_a_live_runs_checkpoint_is_refused_naming_it(live_run):
    """Eval would add only its own folder, but the checkpoint it reads is rewritten or deleted by the live run."""
    line = one_error_line(live_run["others"][2])
    assert f"the run of ckpt_path={live_run['run_dir'] / 'checkpoints' / 'last.ckpt'}" in line
    assert IN_USE.format(pid=live_run["pid"], host=hostname()) in line


def test_the_live_run_is_untouched_by_refused_commands_and_finishes_alone(live_run):
    run_dir = live_run["run_dir"]
    assert live_run["during"] == live_run["before"]  # nothing added, nothing rewritten
    assert live_run["live"].returncode == 0, live_run["live"].stderr[-3000:]
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["pid"] == live_run["pid"] and record["resumes"] == []
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("best-epoch") and names[1] == "last.ckpt", names
    assert not (run_dir / "eval").exists() and not (run_dir / ".hydra" / "resumes").exists()
    assert [step for step, _ in read_scalars(run_dir)["train/loss_epoch"]] == [2, 5]
    assert not (run_dir / HOLD_FILE).exists()  # released as the run ended
    assert [path.parent for path in (live_run["root"] / "logs").rglob("run.json")] == [run_dir]


@pytest.fixture(scope="module")
def refused_run_dirs(live_run, tmp_path_factory) -> dict:
    """The finished run given as hydra.run.dir, and an empty hydra.run.dir typed in a scratch directory."""
    run_dir, root = live_run["run_dir"], live_run["root"]
    scratch = tmp_path_factory.mktemp("typed_here")
    before = {**digests(run_dir), "run.json": hashlib.sha256((run_dir / "run.json").read_bytes()).hexdigest()}
    args = [str(ROOT / "src" / "train.py"), *[a for a in ARGS if "pause" not in a]]
    # Nothing runs beside these: in this process, one after the other.
    existing = run_main([*args, f"hydra.run.dir={run_dir}"], env=pause_env(root), cwd=str(ROOT))
    empty = run_main([*args, "hydra.run.dir="], env=pause_env(root), cwd=str(scratch))
    after = {**digests(run_dir), "run.json": hashlib.sha256((run_dir / "run.json").read_bytes()).hexdigest()}
    return dict(existing=existing, empty=empty, unchanged=after == before, scratch=list(scratch.iterdir()))


def test_hydra_run_dir_of_a_finished_run_is_refused_before_anything_is_touched(refused_run_dirs, live_run):
    line = one_error_line(refused_run_dirs["existing"])
    assert f"hydra.run.dir={live_run['run_dir']} already holds a run (run.json); allowed: a new or empty" in line
    assert refused_run_dirs["unchanged"]  # its .hydra/*.yaml, train.log, record as they were


def test_an_empty_hydra_run_dir_is_refused_and_nothing_is_written(refused_run_dirs):
    line = one_error_line(refused_run_dirs["empty"])
    assert "hydra.run.dir='' is empty; allowed: a new or empty directory for the run" in line
    assert refused_run_dirs["scratch"] == []  # not a run in the directory the command was typed in


# ------------------------------------------------------------------------------------------- two resumes at once


def test_two_resumes_of_a_killed_run_started_at_once_one_wins_and_the_stale_hold_is_taken_over(tmp_path, data_dir):
    marker = tmp_path / "paused"
    args = [*ARGS, f"paths.data_dir={data_dir}"]
    killed = command("train.py", args, tmp_path, marker, "checkpoint:0")
    wait_for(marker, killed)
    killed.kill()
    killed.wait(timeout=60)
    marker.unlink()
    run_dir = only_run_dir(tmp_path)
    stale = json.loads((run_dir / HOLD_FILE).read_text())
    assert stale["pid"] == killed.pid  # the killed process's hold is left behind ...

    resume = [*args, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"]
    both = [command("train.py", resume, tmp_path, marker, "checkpoint:1") for _ in range(2)]
    deadline = time.monotonic() + 240  # the winner holds after its last checkpoint until one has ended
    while all(process.poll() is None for process in both) and time.monotonic() < deadline:
        time.sleep(0.1)
    loser = next((process for process in both if process.poll() is not None), None)
    winner = next(process for process in both if process is not loser)
    refused = finish(loser) if loser is not None else None
    marker.unlink(missing_ok=True)
    won = finish(winner)
    if refused is None:
        refused = finish(loser or both[0])
    assert won.returncode == 0, won.stderr[-3000:]  # ... and taken over by one of the two
    line = one_error_line(refused)
    assert f"{run_dir} " + IN_USE.format(pid=winner.pid, host=hostname()) in line
    record = read_record(run_dir)
    assert record["status"] == "completed" and len(record["resumes"]) == 1 and record["pid"] == winner.pid
    assert len(list((run_dir / ".hydra" / "resumes").iterdir())) == 1


# ------------------------------------------------------------------------------------------- holds themselves


def write_hold(run_dir: Path, **fields) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / HOLD_FILE).write_text(json.dumps(fields))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def test_a_hold_from_another_host_with_a_fresh_heartbeat_is_respected_and_a_stale_one_taken_over(tmp_path):
    """A flock may not reach across hosts on a network filesystem: the holder's heartbeat says whether it lives."""
    now = datetime.now(timezone.utc)
    write_hold(tmp_path / "run", pid=4242, host="elsewhere", started=iso(now), heartbeat=iso(now))
    with pytest.raises(RunHeld, match="is in use by another command \\(pid 4242 on elsewhere since "):
        RunHold.take(tmp_path / "run")
    assert live_holder(tmp_path / "run").pid == 4242

    old = now - timedelta(minutes=10)
    write_hold(tmp_path / "run", pid=4242, host="elsewhere", started=iso(old), heartbeat=iso(old))
    assert live_holder(tmp_path / "run") is None
    hold = RunHold.take(tmp_path / "run")
    assert json.loads((tmp_path / "run" / HOLD_FILE).read_text())["pid"] == os.getpid()
    hold.release()
    assert not (tmp_path / "run" / HOLD_FILE).exists()


def test_a_hold_left_by_a_dead_process_of_this_host_is_taken_over_and_a_live_one_is_not(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_hold(tmp_path / "run", pid=gone.pid, host=hostname(), started=iso(datetime.now(timezone.utc)))
    RunHold.take(tmp_path / "run").release()

    code = (
        "import sys, time; from rnnlab.runs.hold import RunHold; RunHold.take(sys.argv[1]); print('held', flush=True)"
    )
    code += "; time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunHeld, match=f"pid {holder.pid} on {hostname()} since "):
            RunHold.take(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    RunHold.take(tmp_path / "run").release()  # killed -9: the kernel freed its lock
