"""``rnnlab runs rm``: delete runs chosen by id or ``--where``/``--status`` (a dry run unless ``--yes``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.runs.query import describe, resolve_run, short_id
from rnnlab.runs.store import find_records
from rnnlab.runs.subcommand import Subcommand, UsageError, add_roots, add_selection, roots_of, select


class Remove(Subcommand):
    name = "rm"
    help = "delete runs (prints what it would delete; --yes deletes)"
    order = 70

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("runs", metavar="RUN", nargs="*")
        add_selection(parser)
        parser.add_argument("--yes", action="store_true", help="really delete")
        parser.add_argument("--force", action="store_true", help="also delete running runs")
        add_roots(parser)

    def run(self, args: argparse.Namespace) -> int:
        import shutil

        roots = roots_of(args)
        if not args.runs and not args.where and not args.status:
            raise UsageError("rm needs RUN arguments or --where/--status; nothing is deleted by default")
        records = find_records(*roots)
        chosen = {r["dir"]: r for arg in args.runs for r in [resolve_run(arg, roots, records)]}
        if args.where or args.status:
            chosen.update({r["dir"]: r for r in select(records, args)})
        # Runs nested in a chosen directory (its eval/generate outputs) go with it.
        for run_dir in list(chosen):
            chosen.update({r["dir"]: r for r in find_records(run_dir)})
        running = [r for r in chosen.values() if r["status"] == "running"]
        if running and not args.force:
            raise UsageError(f"run {describe(running[0])} is running; stop it first or use --force")
        if not chosen:
            print("no runs match; nothing to delete")
            return 0
        for run_dir, record in sorted(chosen.items()):
            print(
                f"{'deleting' if args.yes else 'would delete'} {short_id(record)} {record.get('name')} "
                f"{record.get('status')} {run_dir}"
            )
            if args.yes and Path(run_dir).exists():
                shutil.rmtree(run_dir)
        if not args.yes:
            print(f"{len(chosen)} run(s) not deleted: add --yes to delete them")
        return 0
