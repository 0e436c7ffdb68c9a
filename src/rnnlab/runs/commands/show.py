"""``rnnlab runs show RUN``: everything in one run's record, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rnnlab.runs.formatting import env_text, local_time, metric_text, value_text
from rnnlab.runs.query import resolve_run
from rnnlab.runs.subcommand import Subcommand, add_roots, roots_of

FIELDS = "id name kind task status error epoch dir started ended duration_s heartbeat host pid devices note tags debug"


def record_lines(record: dict[str, Any]) -> list[str]:
    """The record as aligned ``key  value`` lines, its sections and resumes after."""
    import shlex

    lines = []
    for key in FIELDS.split():
        if key in record:
            lines.append(f"{key:<12}{value_text(record[key])}")
        if key == "duration_s" and record.get("resumes") and key in record:
            lines[-1] += duration_note(record)
        if key == "status" and record.get("status") == "killed":
            lines[-1] += " (recorded as running, but its process is gone or its heartbeat stopped)"
    parent = record.get("parent")
    if parent:
        trial = f" (study {parent['study']}, trial {parent['trial']})" if parent.get("study") else ""
        lines.append(f"{'parent':<12}{parent.get('kind')} {parent.get('dir')}{trial}")
    git = record.get("git")
    if git:
        dirty = "dirty" if git.get("dirty") else "clean"
        if git.get("patch"):
            dirty += f", changes in {Path(record['dir']) / git['patch']}"
        lines.append(f"{'git':<12}{git.get('commit')} ({dirty})")
    if record.get("env"):
        lines.append(f"{'env':<12}{env_text(record)}")
    if record.get("command"):
        lines.append(f"{'command':<12}{shlex.join(record['command'])}")
        lines.append(f"{'overrides':<12}{shlex.join(record.get('overrides') or [])}")
    if record.get("versions"):
        lines.append(f"{'versions':<12}" + ", ".join(f"{k} {v}" for k, v in record["versions"].items()))
    for section in ("checkpoints", "params", "metrics"):
        values = record.get(section) or {}
        if values:
            lines.append(f"{section}:")
            width = max(len(key) for key in values) + 2
            text = metric_text if section == "metrics" else value_text
            lines += [f"  {key:<{width}}{text(value)}" for key, value in values.items()]
    for number, entry in enumerate(record.get("resumes") or [], 1):
        git = entry.get("git")
        lines.append(
            f"resume {number}: {local_time(entry.get('started'))} .. {local_time(entry.get('ended'))} "
            f"{entry.get('status')} {shlex.join(entry.get('overrides') or [])}"
            + (f" (git {git['commit'][:12]}{' dirty' if git['dirty'] else ''})" if git else "")
            + (f" error: {entry['error']}" if entry.get("error") else "")
        )
    return lines


def duration_note(record: dict[str, Any]) -> str:
    """A resumed run's ``duration_s`` is the time it ran, over its sessions: not ``ended - started``."""
    from rnnlab.runs.store import parse_time

    sessions = len(record["resumes"]) + 1
    started, ended = parse_time(record.get("started")), parse_time(record.get("ended"))
    span = f"; {(ended - started).total_seconds():.1f} s from started to ended" if started and ended else ""
    return f" (the time it ran, over {sessions} sessions{span})"


class Show(Subcommand):
    name = "show"
    help = "everything in one run's record"
    order = 20

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", metavar="RUN", help="run directory or id prefix (>= 4 hex)")
        parser.add_argument("--json", action="store_true", help="the record as JSON")
        add_roots(parser)

    def run(self, args: argparse.Namespace) -> int:
        record = resolve_run(args.run, roots_of(args))
        if args.json:
            json.dump(record, sys.stdout, indent=1)
            print()
            return 0
        print("\n".join(record_lines(record)))
        return 0
