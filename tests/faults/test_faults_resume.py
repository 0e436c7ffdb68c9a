"""A resume finishes what is unfinished (issue 23): a run killed at the worst moments, resumed with the same command.

One run, killed twice where a kill costs most, each point held by the pausing callback (tests/fixtures/pausing.py):
right after an epoch's checkpoint was written (before Lightning hands that epoch's training metrics to the
loggers), then while testing, after its last epoch. The same command resumes it each time.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, pause_env, read_scalars, read_session_status, start_script, tiny, wait_for
from inprocess import run_main
from rnnlab.runs.store import read_record

pytestmark = pytest.mark.slow

EPOCHS = 3
BATCHES = 3  # per epoch: epoch e's epoch-level points are at step 3e + 2


def start(args: list[str], root: Path, pause: Path | None = None, at: str | None = None) -> subprocess.Popen:
    return start_script("train.py", args, pause_env(root, pause, at))


def kill_when_paused(process: subprocess.Popen, marker: Path, timeout: float = 240) -> None:
    """SIGKILL ``process`` once it holds at its pause point (it created ``marker``)."""
    wait_for(marker, process, timeout)
    process.kill()
    process.wait(timeout=60)
    marker.unlink()


def digests(run_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in run_dir.rglob("*")
        if path.is_file() and path.name != ".run.json.lock"
    }


@pytest.fixture(scope="module")
def killed_twice(tmp_path_factory, data_dir) -> dict:
    """A 3-epoch one-cycle run killed -9 right after epoch 1's checkpoint, resumed with the same command and
    killed -9 again while testing (all epochs trained), resumed once more; then that command a third time."""
    root = tmp_path_factory.mktemp("killed_twice")
    marker = root / "paused"
    args = [
        "model=vanilla",
        *tiny(max_epochs=EPOCHS, limit_train_batches=BATCHES, limit_val_batches=1, limit_test_batches=1),
        "seed=3",
        f"paths.data_dir={data_dir}",
        "+callbacks.pause._target_=pausing.PauseAt",
    ]
    kill_when_paused(start(args, root, marker, "checkpoint:1"), marker)
    (run_dir,) = [path.parent for path in (root / "logs").rglob("run.json")]
    killed = dict(record=read_record(run_dir), session=read_session_status(run_dir))
    resume = [*args, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"]

    kill_when_paused(start(resume, root, marker, "test"), marker)
    after_first_resume = dict(scalars=read_scalars(run_dir), record=read_record(run_dir))
    # The kills need processes; what follows runs in this one (the same command, no signal to send).
    finished = run_main([str(ROOT / "src" / "train.py"), *resume], env=pause_env(root), cwd=str(ROOT))
    before_again = digests(run_dir)
    again = run_main([str(ROOT / "src" / "train.py"), *resume], env=pause_env(root), cwd=str(ROOT))
    return dict(
        run_dir=run_dir,
        killed=killed,
        after_first_resume=after_first_resume,
        finished=finished,
        again=again,
        unchanged=digests(run_dir) == before_again,
    )


def test_a_killed_run_reads_as_killed_not_finished(killed_twice):
    assert killed_twice["killed"]["record"]["status"] == "killed"
    assert killed_twice["killed"]["session"] != "STATUS_SUCCESS"  # none written: TensorBoard shows it unknown


def test_every_epoch_a_checkpoint_holds_is_in_tensorboard_after_a_kill_and_resume(killed_twice):
    """Killed right after epoch 1's checkpoint: the resume starts at epoch 2, so epoch 1's train/loss_epoch
    must have been written before that checkpoint."""
    scalars = killed_twice["after_first_resume"]["scalars"]
    every_epoch = [BATCHES * epoch + BATCHES - 1 for epoch in range(EPOCHS)]
    assert [step for step, _ in scalars["train/loss_epoch"]] == every_epoch, scalars["train/loss_epoch"]
    assert [step for step, _ in scalars["val/loss"]] == every_epoch
    assert killed_twice["after_first_resume"]["record"]["status"] == "killed"


def test_a_run_killed_while_testing_is_finished_by_the_same_command(killed_twice):
    run_dir, finished = killed_twice["run_dir"], killed_twice["finished"]
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"trained all {EPOCHS} epochs before it was killed; finishing its test" in finished.stdout
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epoch"] == EPOCHS, record
    assert record["metrics"]["test/acc"] is not None and record["metrics"]["val/acc_best"] is not None
    assert len(record["resumes"]) == 2 and record["resumes"][-1]["status"] == "completed"
    scalars = read_scalars(run_dir)
    assert len(scalars["test/acc"]) == 1 and len(scalars["train/loss_epoch"]) == EPOCHS
    assert read_session_status(run_dir) == "STATUS_SUCCESS"
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("best-epoch") and names[1] == "last.ckpt", names

    # Once completed, the same command is refused in one line and leaves the run as it was.
    again = killed_twice["again"]
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 1 and len(lines) == 1, again.stderr[-3000:]
    assert lines[0].startswith(f"error: trainer.max_epochs={EPOCHS} is already reached by the run in")
    assert killed_twice["unchanged"]
