"""An interrupted run as ``rnnlab runs show`` tells it (issue 24): the checkpoints it kept, the metrics it
reached, and a duration that is the time it ran; then the same run resumed to its end.

The run is stopped at an exact point (tests/fixtures/pausing.py ``PauseAt``: epoch 1's end, its checkpoints
written), by Ctrl-C to its process group, as a terminal sends it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import FIXTURES, ROOT, cli_env, interrupt_at, read_scalars, tiny
from inprocess import run_main
from rnnlab.runs.commands.show import record_lines
from rnnlab.runs.store import parse_time, read_record

pytestmark = pytest.mark.slow

ARGS = [
    "model=gru",
    *tiny(max_epochs=3, limit_val_batches=1, limit_test_batches=1),
    "+callbacks.pause._target_=pausing.PauseAt",
]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, data_dir) -> dict:
    """A 3-epoch run interrupted after epoch 1's checkpoints (its record and show lines then), resumed to its end."""
    root = tmp_path_factory.mktemp("interrupted")
    args = [*ARGS, f"paths.data_dir={data_dir}"]
    stopped = interrupt_at(args, root, "checkpoint:1")
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    (run_dir,) = [path.parent for path in (root / "logs").rglob("run.json")]
    record = read_record(run_dir)
    lines = record_lines(record)
    resume = [*args, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"]
    env = {**cli_env(root), "PYTHONPATH": str(FIXTURES)}  # the same command: its pausing callback, not holding
    resumed = run_main([str(ROOT / "src" / "train.py"), *resume], env=env, cwd=str(ROOT))  # in this process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return dict(run_dir=run_dir, record=record, lines=lines, final=read_record(run_dir))


def span(record: dict) -> float:
    return (parse_time(record["ended"]) - parse_time(record["started"])).total_seconds()


def test_show_of_an_interrupted_run_lists_its_checkpoints_and_metrics(interrupted):
    record, lines, run_dir = interrupted["record"], interrupted["lines"], interrupted["run_dir"]
    assert record["status"] == "interrupted" and record["epoch"] == 2
    checkpoints = record["checkpoints"]
    assert checkpoints["last"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoints["best"] and Path(checkpoints["best"]).is_file() and Path(checkpoints["last"]).is_file()
    assert f"  last  {checkpoints['last']}" in lines and f"  best  {checkpoints['best']}" in lines
    # the metrics it reached: the best validation value TensorBoard holds for the epochs it trained
    logged = read_scalars(run_dir)["val/acc_best"]
    assert record["metrics"]["val/acc_best"] == pytest.approx(logged[-1][1])
    assert any(line.startswith("  val/acc_best") for line in lines)
    # one session: the time it ran is from its start to its end
    assert record["duration_s"] == pytest.approx(span(record), abs=0.5)


def test_a_resumed_runs_duration_is_the_time_it_ran_over_its_sessions(interrupted):
    first, final = interrupted["record"], interrupted["final"]
    assert final["status"] == "completed" and len(final["resumes"]) == 1
    resumed = (parse_time(final["ended"]) - parse_time(final["resumes"][0]["started"])).total_seconds()
    # both sessions' time, not the wall clock from the first start to the last end (the gap between them)
    assert final["duration_s"] == pytest.approx(first["duration_s"] + resumed, abs=1.0)
    assert final["duration_s"] < span(final)
    (line,) = [line for line in record_lines(final) if line.startswith("duration_s")]
    assert "over 2 sessions" in line and f"{span(final):.1f} s from started to ended" in line
