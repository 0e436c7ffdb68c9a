"""What a user reads on the console of a run: what it is about to do, the progress bar, one summary line.

Lightning's INFO lines, the layer table and the test table go to the run's train.log only. Counted in a
pseudo-terminal (where a live progress bar and a log line can end up glued on one line) and piped.
"""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, cli_env
from inprocess import run_main

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
# A progress bar and its metrics' continuation line (rich draws them; a terminal redraws them in place).
# Its metrics wrap onto lines of their own in a narrow terminal ("val/acc_best:", "0.174").
BAR = re.compile(r"━|^\s*(Epoch \d|Testing|Validation|Sanity Checking)|^\s*([\w/]+:)?\s*[-0-9.e]*\s*$")
MAX_LINES = 10


def console_lines(output: str) -> list[str]:
    """The lines a user reads besides the progress bar: ANSI codes stripped, each redraw split off."""
    text = ANSI.sub("", output)
    lines = [line.rstrip() for line in re.split(r"[\r\n]+", text)]
    return [line for line in lines if line.strip() and not BAR.search(line)]


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    """Run ``python <args>`` with a pseudo-terminal as its stdout and stderr; its exit code and output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of 100 columns, as a user's
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, *args], {**env, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"})
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def tiny_env(tmp_path: Path) -> dict[str, str]:
    return {**cli_env(tmp_path), "RNNLAB_BUDGET": "tiny"}


def check_console(lines: list[str], run_log: str) -> None:
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    assert lines[0].startswith("[rnnlab] training lstm-builtin-h8 (3,562 params) on mnist1d"), lines
    assert any(line.startswith("[rnnlab] lstm-builtin-h8 params=3,562 test/acc=") for line in lines), lines
    joined = "\n".join(lines)
    for noise in ("Seed set", "GPU available", "Trainer.fit", "Restoring states", "Test metric", "┏", "litlogger"):
        assert noise not in joined, noise
    # glued: a summary or log line that does not start its own line
    assert not any("[rnnlab]" in line and not line.startswith("[rnnlab]") for line in lines), lines
    for kept in ("Seed set to 42", "GPU available", "Total params", "Restoring states"):  # all still in train.log
        assert kept in run_log, kept


def run_log_of(root: Path) -> str:
    (log,) = root.glob("logs/mnist1d/*/seed42/version_0/train.log")
    return log.read_text()


@pytest.mark.slow
def test_a_default_run_in_a_terminal_prints_a_few_lines_besides_the_progress_bar(tmp_path):
    code, output = run_in_terminal(["src/train.py"], tiny_env(tmp_path))
    assert code == 0, output[-3000:]
    check_console(console_lines(output), run_log_of(tmp_path))


@pytest.mark.slow
@pytest.mark.smoke
def test_a_default_run_piped_prints_a_few_lines(tmp_path):
    result = run_main([str(ROOT / "src" / "train.py")], env=tiny_env(tmp_path), cwd=str(ROOT))  # fds 1, 2 captured
    assert result.returncode == 0, result.stderr[-3000:]
    check_console(console_lines(result.stdout + result.stderr), run_log_of(tmp_path))


def test_console_lines_drops_the_bar_and_keeps_glued_lines():
    output = (
        "\x1b[2K\rEpoch 1/1  ━━━━━━━━ 3/3 0:00:01 • 0:00:00 1.33it/s val/acc: 0.154\n"
        "                                      val/acc_best: 0.174\n"
        "val/acc_best: 0.430[2026-12-06 10:00:00][pytorch_lightning][INFO] - `Trainer.fit` stopped\n"
        "[rnnlab] done\n"
    )
    assert console_lines(output) == [
        "val/acc_best: 0.430[2026-12-06 10:00:00][pytorch_lightning][INFO] - `Trainer.fit` stopped",
        "[rnnlab] done",
    ]
