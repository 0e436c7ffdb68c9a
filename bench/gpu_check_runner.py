"""A budgeted runner of parts (the engine of ``make gpu-check``, bench/gpu_check.py): each part runs its commands
until its deadline; one that overruns is stopped with its whole process group, an error becomes its outcome, and
the next part runs. ``render_summary`` writes the markdown summary of the parts' outcomes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TAIL_LINES = 15


@dataclass
class Context:
    """What every part is given: the Python to run, a working directory (``RNNLAB_ROOT``), the data directory,
    the visible GPUs and the commands' environment."""

    python: str
    work: Path
    data_dir: Path
    n_gpus: int
    env: dict = field(default_factory=dict)


class Overrun(Exception):
    """A command ran past its part's budget and was stopped (its whole process group killed)."""

    def __init__(self, command: list[str], seconds: float, stdout: str = "", stderr: str = "") -> None:
        super().__init__(f"stopped after {seconds:.0f} s: {' '.join(command)}")
        self.command, self.seconds, self.stdout, self.stderr = command, seconds, stdout, stderr


def run_command(
    command: list[str], deadline: float, env: Mapping[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """Run ``command`` until ``deadline`` (``time.monotonic()``), capturing its output; past it, kill the
    command's process group (the command and everything it started: joblib workers, DDP ranks) and raise
    ``Overrun``."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        raise Overrun(command, 0.0)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a kill reaches its children too
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as error:  # the timeout, or Ctrl-C: leave nothing running
        _kill_group(process)
        try:
            stdout, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild in a session of its own still holds the pipes
            stdout, stderr = "", ""
        if isinstance(error, subprocess.TimeoutExpired):
            raise Overrun(command, timeout, stdout or "", stderr or "") from None
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Outcome:
    """What a part reports: ``status`` passed | failed | overran | error, a one-line ``headline`` for the
    overview table, a markdown ``body``; ``seconds`` is filled in by ``run_part``."""

    status: str
    headline: str
    body: str = ""
    seconds: float = 0.0


@dataclass
class Part:
    key: str
    title: str
    budget: float
    run: Callable[[float], Outcome]  # called with the part's deadline (time.monotonic())


def run_part(part: Part) -> Outcome:
    """Run one part within its budget; an overrun or an error becomes its outcome (the check goes on)."""
    start = time.monotonic()
    try:
        outcome = part.run(start + part.budget)
    except Overrun as overrun:
        outcome = Outcome(
            "overran",
            f"stopped at its budget of {part.budget:.0f} s",
            f"Stopped: `{' '.join(overrun.command)}` ran past the part's budget of {part.budget:.0f} s.\n\n"
            + tail_block(overrun.stdout + overrun.stderr),
        )
    except Exception as error:
        outcome = Outcome("error", first_line(error), "```\n" + traceback.format_exc()[-3000:] + "```")
    outcome.seconds = time.monotonic() - start
    return outcome


def run_parts(parts: Iterable[Part], report: Callable[[str], None] = print) -> list[tuple[Part, Outcome]]:
    done = []
    for part in parts:
        report(f"[gpu-check] {part.title} (budget {part.budget:.0f} s) ...")
        outcome = run_part(part)
        report(f"[gpu-check]   {outcome.status} in {outcome.seconds:.0f} s: {outcome.headline}")
        done.append((part, outcome))
    return done


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def tail_block(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "```\n" + "\n".join(kept) + "\n```" if kept else "(no output)"


def render_summary(header: Mapping[str, str], done: list[tuple[Part, Outcome]], total_seconds: float) -> str:
    """The markdown summary: the environment, one overview row per part, then each part's section."""
    lines = ["# rnnlab GPU check", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        f"- total: {total_seconds:.0f} s",
        "",
        "| part | result | seconds | budget s | |",
        "|---|---|---|---|---|",
    ]
    for part, outcome in done:
        lines.append(
            f"| {part.title} | {outcome.status.upper()} | {outcome.seconds:.0f} | {part.budget:.0f} | "
            f"{outcome.headline} |"
        )
    for part, outcome in done:
        lines += [
            "",
            f"## {part.title}",
            "",
            f"**{outcome.status.upper()}** ({outcome.seconds:.0f} s of {part.budget:.0f}): {outcome.headline}",
        ]
        if outcome.body:
            lines += ["", outcome.body.rstrip()]
    return "\n".join(lines) + "\n"


def exit_code(done: list[tuple[Part, Outcome]]) -> int:
    return 0 if all(outcome.status == "passed" for _, outcome in done) else 1
