"""Signals: one exit-code convention for every command (docs/usage.md "Exit codes"): 130 for SIGINT (Ctrl-C),
143 for SIGTERM, with one ``error:`` line on stderr and no traceback, wherever the signal lands.

The signal is sent at an exact point, not after a sleep: ``RNNLAB_TEST_HOLD=<point>:<file>`` holds a command
there (rnnlab.app.setup.hold_for_test: ``start`` before Hydra composes, ``composed`` in a single run's job
with its directory reserved, ``job`` in each job of a multirun) and the file says it got there. A signal inside
Lightning's fit, then the run continued: tests/test_records.py.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import FIXTURES, TINY, cli_env, run_cli, start_script, wait_for

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def signalled(script: str, args: list[str], root: Path, hold: dict[str, str], signum: int) -> tuple[int, str]:
    """Start ``src/<script>`` (at the tiny budget) held as ``hold`` says (env vars naming a marker file), send
    ``signum`` once it is there (SIGINT to its process group, as a terminal's Ctrl-C; SIGTERM to the process,
    as ``kill``); its exit code and stderr."""
    (marker,) = [Path(value.rpartition(":")[2]) for value in hold.values()]
    env = {**cli_env(root), "PYTHONPATH": str(FIXTURES), "RNNLAB_BUDGET": "tiny", **hold}
    process = start_script(script, args, env)
    try:
        wait_for(marker, process)
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        marker.unlink()  # lets a paused fit go on to the next batch, where Lightning acts on SIGTERM
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return process.returncode, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A sine run's last checkpoint: one that eval and generate both take."""
    root = tmp_path_factory.mktemp("trained")
    result = run_cli("train.py", *TINY, "data=sine", root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (last,) = root.glob("logs/*/*/*/version_0/checkpoints/last.ckpt")
    return last


def rows(data_dir: Path, ckpt: Path) -> dict[str, tuple[str, list[str], str, int]]:
    """name: (script, args, hold point, signal): every command kind, both signals, the points Ctrl-C meets."""
    data = f"paths.data_dir={data_dir}"
    train = [*TINY, data]
    return {
        "train-start-SIGINT": ("train.py", train, "start", signal.SIGINT),
        "train-composed-SIGINT": ("train.py", train, "composed", signal.SIGINT),
        "train-composed-SIGTERM": ("train.py", train, "composed", signal.SIGTERM),
        "eval-SIGINT": ("eval.py", [f"ckpt_path={ckpt}"], "composed", signal.SIGINT),
        "generate-SIGTERM": ("generate.py", [f"ckpt={ckpt}"], "composed", signal.SIGTERM),
        "compare-SIGTERM": ("train.py", ["-m", "experiment=compare_cells", data], "job", signal.SIGTERM),
        "study-SIGTERM": (
            "study.py", ["study.cells=[gru]", "study.trials=1", "study.jobs=1", data], "job", signal.SIGTERM,
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def held(tmp_path_factory, data_dir, checkpoint):
    """Each row's (exit code, stderr, root), run three at a time."""
    commands = rows(data_dir, checkpoint)

    def run(name: str):
        script, args, point, signum = commands[name]
        root = tmp_path_factory.mktemp(name)
        hold = {"RNNLAB_TEST_HOLD": f"{point}:{tmp_path_factory.mktemp('marker') / 'held'}"}
        try:
            return (*signalled(script, args, root, hold, signum), root)
        except AssertionError as error:  # it ended before it got to the point: its own test says how
            return None, str(error), root

    with ThreadPoolExecutor(3) as pool:
        return dict(zip(commands, pool.map(run, commands), strict=True))


@pytest.mark.parametrize("name", list(rows(Path(), Path())))
def test_every_command_exits_130_on_sigint_and_143_on_sigterm_with_one_line(held, name):
    code, err, root = held[name]
    signum = signal.SIGINT if name.endswith("SIGINT") else signal.SIGTERM
    lines = err.strip().splitlines()
    assert code == CODES[signum], err[-3000:]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert lines[0].startswith(("error: ", "interrupted: ")), lines  # the study: how to continue it


@pytest.mark.parametrize("name", ["train-start-SIGINT", "train-composed-SIGINT", "train-composed-SIGTERM"])
def test_a_run_interrupted_before_it_got_under_way_leaves_nothing(held, name):
    code, err, root = held[name]
    assert err.strip() == f"error: interrupted by {name.rpartition('-')[2]}"
    assert not (root / "logs").exists()  # its reserved run directory and the folders made for it are gone
