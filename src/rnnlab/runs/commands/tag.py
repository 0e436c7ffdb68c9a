"""``rnnlab runs tag RUN TEXT [--remove]``: add or remove one tag in a run's record."""

from __future__ import annotations

import argparse
from typing import Any

from rnnlab.runs.query import resolve_run, short_id
from rnnlab.runs.store import edit_record
from rnnlab.runs.subcommand import Subcommand, UsageError, add_roots, editable, roots_of


class Tag(Subcommand):
    name = "tag"
    help = "add (or --remove) a tag"
    order = 50

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", metavar="RUN")
        parser.add_argument("text", metavar="TEXT")
        parser.add_argument("--remove", action="store_true")
        add_roots(parser)

    def run(self, args: argparse.Namespace) -> int:
        record = resolve_run(args.run, roots_of(args))
        tag = args.text.strip()
        if not tag or "," in tag:
            raise UsageError(f"tag {args.text!r} is not allowed; a tag is non-empty text without commas")
        if args.remove and tag not in (record.get("tags") or []):
            tags = ", ".join(record.get("tags") or []) or "none"
            raise UsageError(f"run {short_id(record)} has no tag {tag!r}; its tags: {tags}")

        def change(data: dict[str, Any]) -> None:
            tags = [t for t in data.get("tags") or [] if t != tag]
            data["tags"] = tags if args.remove else [*tags, tag]

        data = edit_record(editable(record), change)
        print(f"{short_id(record)} {record.get('name')}: tags {', '.join(data['tags']) or '(none)'}")
        return 0
