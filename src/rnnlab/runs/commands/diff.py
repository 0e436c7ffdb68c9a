"""``rnnlab runs diff RUN RUN``: two runs side by side (differing params, metrics, commits)."""

from __future__ import annotations

import argparse
from typing import Any

from rnnlab.runs.formatting import console, env_text, local_time, metric_text, run_duration, value_text
from rnnlab.runs.query import metric_names, resolve_run, short_id
from rnnlab.runs.settings import record_settings
from rnnlab.runs.store import find_records
from rnnlab.runs.subcommand import Subcommand, add_roots, roots_of


def git_text(record: dict[str, Any]) -> str:
    state = record.get("git")
    return "-" if not state else f"{(state.get('commit') or '')[:12]}{' dirty' if state.get('dirty') else ''}"


def diff_table(first: dict[str, Any], second: dict[str, Any]):
    """A rich table: a few facts of each run, the settings that differ, every metric."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    for record in (first, second):
        table.add_column(f"{short_id(record)} {record.get('name')}", no_wrap=True)
    for label, get in (
        ("status", lambda r: value_text(r.get("status"))),
        ("started", lambda r: local_time(r.get("started"))),
        ("duration", run_duration),
        ("epoch", lambda r: value_text(r.get("epoch"))),
        ("git", git_text),
    ):
        table.add_row(label, get(first), get(second))
    if first.get("env") or second.get("env"):  # RNNLAB_BUDGET=tiny shrank one
        table.add_row("env", env_text(first) or "-", env_text(second) or "-")
    # The curated settings: no plumbing, paths (each run's own directory) or copies (run_name, shuffle_seed).
    params_a, params_b = record_settings(first), record_settings(second)
    differing = [k for k in sorted(set(params_a) | set(params_b)) if params_a.get(k, ...) != params_b.get(k, ...)]
    table.add_section()
    table.add_row(Text("settings", style="bold"), "", "")
    for key in differing:
        table.add_row(key, value_text(params_a.get(key)), value_text(params_b.get(key)))
    if not differing:
        table.add_row(Text(f"(all {len(params_a)} equal)", style="dim"), "", "")
    table.add_section()
    table.add_row(Text("metrics", style="bold"), "", "")
    metrics_a, metrics_b = first.get("metrics") or {}, second.get("metrics") or {}
    for name in metric_names([first, second]):
        table.add_row(name, metric_text(metrics_a.get(name)), metric_text(metrics_b.get(name)))
    return table


class Diff(Subcommand):
    name = "diff"
    help = "two runs side by side: differing settings, metrics, commits"
    order = 30

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("first", metavar="RUN")
        parser.add_argument("second", metavar="RUN")
        add_roots(parser)

    def run(self, args: argparse.Namespace) -> int:
        roots = roots_of(args)
        records = find_records(*roots)
        first, second = (resolve_run(arg, roots, records) for arg in (args.first, args.second))
        console().print(diff_table(first, second))
        return 0
