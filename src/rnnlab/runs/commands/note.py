"""``rnnlab runs note RUN TEXT``: set (or with '' clear) a run's note."""

from __future__ import annotations

import argparse

from rnnlab.runs.query import resolve_run, short_id
from rnnlab.runs.store import edit_record
from rnnlab.runs.subcommand import Subcommand, add_roots, editable, roots_of


class Note(Subcommand):
    name = "note"
    help = "set a run's note ('' clears it)"
    order = 60

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", metavar="RUN")
        parser.add_argument("text", metavar="TEXT")
        add_roots(parser)

    def run(self, args: argparse.Namespace) -> int:
        record = resolve_run(args.run, roots_of(args))
        edit_record(editable(record), lambda data: data.update(note=args.text))
        print(f"{short_id(record)} {record.get('name')}: note {args.text!r}")
        return 0
