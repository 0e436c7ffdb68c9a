"""Faults of the disk under a run: a read-only root, a file where a folder should be, a full disk, a checkpoint
that cannot be written. Each ends in one ``error:`` line naming the path and the problem, exit code 1; a run
that had started records ``failed`` with the reason, and its full traceback goes to its train.log.

Tests run as root, for whom ``chmod`` makes nothing read-only: a read-only bind mount or a tiny tmpfs inside a
private mount namespace (``unshare -m``), or ``chattr +i``; skipped with the reason where they are not allowed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FIXTURES, ROOT, cli_env, run_cli, tiny

TINY_RUN = tiny(max_epochs=2)


def in_mount_namespace(setup: str, command: list[str], root: Path) -> subprocess.CompletedProcess:
    """Run ``command`` (a run of src/) after the shell ``setup`` in a mount namespace of its own (skip where
    this process may not make one)."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")
    script = f"{setup} || exit 99; exec {shlex.join(command)}"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=cli_env(root), capture_output=True, text=True, timeout=300
    )
    if result.returncode == 99:
        pytest.skip(f"mounting is not permitted here: {result.stderr.strip()}")
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def train_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "src" / "train.py"), *args]


def test_a_read_only_root_is_one_line_naming_it(tmp_path, data_dir):
    root = tmp_path / "root"
    root.mkdir()
    setup = f"mount --bind {root} {root} && mount -o remount,bind,ro {root}"
    result = in_mount_namespace(setup, train_command(*TINY_RUN, f"paths.data_dir={data_dir}"), root)
    line = one_error_line(result)
    assert line.startswith(f"error: cannot create {root}/logs/") and line.endswith(
        f"{root}/logs: read-only file system"
    )


def test_logs_that_is_a_file_is_one_line_naming_it(tmp_path, data_dir):
    (tmp_path / "logs").write_text("not a folder")
    line = one_error_line(run_cli("train.py", *TINY_RUN, f"paths.data_dir={data_dir}", root=tmp_path))
    assert line.startswith(f"error: cannot create {tmp_path}/logs/") and line.endswith(
        f"{tmp_path}/logs is a file, not a directory"
    )
    assert (tmp_path / "logs").read_text() == "not a folder"


def test_a_full_disk_fails_the_run_in_one_line_and_its_record_says_why(tmp_path, data_dir):
    # 160 KiB: room for the run's directory, config and record, not for its first checkpoints.
    root = tmp_path / "root"
    root.mkdir()
    keep = tmp_path / "kept"  # the tmpfs goes with the namespace: copy the run's record out before it does
    command = shlex.join(train_command(*TINY_RUN, f"paths.data_dir={data_dir}"))
    script = f"{command}; code=$?; mkdir {keep} && cp {root}/logs/*/*/*/*/run.json {keep}/; exit $code"
    result = in_mount_namespace(f"mount -t tmpfs -o size=160k tmpfs {root}", ["sh", "-c", script], root)
    line = one_error_line(result)
    assert "No space left on device" in line
    record = json.loads((keep / "run.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]


def chattr(flag: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)


def test_a_checkpoint_that_cannot_be_written_fails_the_run_in_one_line_with_the_traceback_in_its_log(
    tmp_path, data_dir
):
    probe = tmp_path / "probe"
    probe.touch()
    if chattr("+i", probe).returncode != 0:
        pytest.skip(f"chattr +i is not supported on {tmp_path}'s file system")
    chattr("-i", probe)
    paused = tmp_path / "paused"
    args = [*TINY_RUN, f"paths.data_dir={data_dir}", "+callbacks.pause._target_=pausing.PauseInFit"]
    env = {**cli_env(tmp_path), "PYTHONPATH": str(FIXTURES), "RNNLAB_TEST_PAUSE": str(paused)}
    process = subprocess.Popen(
        train_command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    checkpoints = None
    try:
        deadline = time.monotonic() + 240
        while not paused.exists():  # held at the end of epoch 1, before its checkpoints are written
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.1)
        (run_dir,) = (tmp_path / "logs").glob("*/*/*/version_0")
        checkpoints = run_dir / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        assert chattr("+i", checkpoints).returncode == 0
        paused.unlink()
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
        if checkpoints is not None:
            chattr("-i", checkpoints)
    lines = err.strip().splitlines()
    assert process.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert (
        f"checkpoint {checkpoints}/best-epoch000.ckpt was not written: {checkpoints}: Operation not permitted"
        in lines[0]
    )
    assert f"the traceback is in {run_dir}/train.log" in lines[0]
    assert "Traceback (most recent call last)" in (run_dir / "train.log").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "Operation not permitted" in record["error"]
