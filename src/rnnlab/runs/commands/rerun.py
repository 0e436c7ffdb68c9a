"""``rnnlab runs rerun RUN [--exec]``: the command that recreates a run (under the environment variables its
record keeps, such as ``RNNLAB_BUDGET``), with a warning where the checkout differs from the run's."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnlab.runs.environment import git_state
from rnnlab.runs.formatting import env_text
from rnnlab.runs.query import QueryError, default_roots, resolve_run, short_id
from rnnlab.runs.store import PATCH_FILE
from rnnlab.runs.subcommand import Subcommand, add_roots, roots_of


def entry_command(command: Sequence[str]) -> list[str]:
    """``[python, *python options, script or -m module]`` of a recorded command, without its arguments
    (for a command that is not Python's, such as a console script: the program alone)."""
    if not command:
        return []
    entry, rest = [command[0]], list(command[1:])
    if not Path(command[0]).name.startswith("python"):
        return entry
    while rest:
        arg = rest.pop(0)
        entry.append(arg)
        if arg in ("-m", "-X", "-W", "-c") and rest:
            entry.append(rest.pop(0))
            if arg in ("-m", "-c"):
                break
        elif not arg.startswith("-"):
            break
    return entry


def rerun_command(record: dict[str, Any]) -> list[str]:
    """The entry point with the run's original overrides (a sweep trial's own, without the sweep's ``-m``)."""
    entry = entry_command(record.get("command") or [])
    if not entry:
        raise QueryError(f"run {short_id(record)} has no recorded command to rerun")
    return [*entry, *(record.get("overrides") or [])]


def git_warning(record: dict[str, Any], cwd: Path) -> str | None:
    recorded = record.get("git")
    if not recorded:
        return None
    current = git_state(cwd)

    def state(git: dict[str, Any] | None) -> str:
        return "no git checkout" if not git else f"{git['commit'][:12]} ({'dirty' if git['dirty'] else 'clean'})"

    if current and current["commit"] == recorded["commit"] and not current["dirty"] and not recorded["dirty"]:
        return None
    patch = f"; its changes: {Path(record['dir']) / PATCH_FILE}" if recorded.get("patch") else ""
    return f"warning: this checkout is {state(current)}, the run used {state(recorded)}; results may differ{patch}"


class Rerun(Subcommand):
    name = "rerun"
    help = "the command that recreates a run"
    order = 40

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", metavar="RUN")
        parser.add_argument("--exec", action="store_true", help="also run it (from the directory it was run in)")
        add_roots(parser)

    def run(self, args: argparse.Namespace) -> int:
        import shlex
        import subprocess

        record = resolve_run(args.run, roots_of(args))
        command = rerun_command(record)
        shown = ["python" if Path(command[0]).name.startswith("python") else command[0], *command[1:]]
        recorded_cwd = Path(record.get("cwd") or ".")
        cwd = recorded_cwd if recorded_cwd.is_dir() else Path(default_roots()[0]).parent
        warning = git_warning(record, cwd)
        if warning:
            print(warning, file=sys.stderr)
        print(" ".join(filter(None, [env_text(record), shlex.join(shown)])))
        if not args.exec:
            return 0
        if Path(command[0]).name.startswith("python"):
            command[0] = sys.executable
        sys.stdout.flush()
        env = {**os.environ, **(record.get("env") or {})}
        return subprocess.run(command, cwd=cwd, env=env).returncode
