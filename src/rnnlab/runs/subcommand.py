"""What every ``rnnlab runs`` subcommand is: a ``Subcommand`` class in a module of ``rnnlab.runs.commands``.

Defining the class registers it (``REGISTRY``); ``rnnlab.runs.cli`` imports every module of that package, so
adding a subcommand is one new file (docs/development.md, "Adding a `rnnlab runs` subcommand"). The options
that several subcommands share (``--dir``, ``--where``/``--status``/``--all``) are here too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar

from rnnlab.runs.query import QueryError, check_keys, default_roots, parse_statuses, parse_where
from rnnlab.runs.store import STATUSES


class UsageError(Exception):
    """A user mistake: printed as one ``error:`` line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but its errors are one ``error:`` line (no usage block), like the rest of rnnlab."""

    def error(self, message: str):
        raise UsageError(message)


class Subcommand:
    """One ``rnnlab runs NAME``: its options (``add_arguments``) and what it does (``run``, the exit code).

    A subclass that sets ``name`` registers itself; ``order`` places it in ``--help`` (lower first).
    """

    name: ClassVar[str]
    help: ClassVar[str]
    order: ClassVar[int] = 100

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this subcommand's options and arguments to its own ``parser``."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


REGISTRY: dict[str, type[Subcommand]] = {}


# ------------------------------------------------------------------------------------------- shared options


def add_roots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        action="append",
        type=Path,
        metavar="PATH",
        help="where to look for runs (repeatable; default: logs/ and multirun/ under $RNNLAB_ROOT or here)",
    )


def roots_of(args: argparse.Namespace) -> list[Path]:
    if not args.dir:
        return default_roots()
    for root in args.dir:
        if not root.exists():
            raise UsageError(f"--dir {str(root)!r} does not exist; give a directory holding run directories")
    return list(args.dir)


def add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--where", action="append", default=[], metavar="COND", help="e.g. 'model.cell=gru and val/acc>0.9'"
    )
    parser.add_argument(
        "--status",
        action="append",
        default=[],
        help=f"repeatable or comma list of: {', '.join(STATUSES)}",
    )
    parser.add_argument("--all", action="store_true", help="include debug runs and unreadable records")


def select(records: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Apply --status, --where and the debug/unreadable default: what `runs` lists and `rm --where` removes."""
    statuses = parse_statuses(args.status)
    clauses = [clause for text in args.where for clause in parse_where(text)]
    check_keys([clause.key for clause in clauses], [r for r in records if r["status"] != "unreadable"], "--where")
    chosen = []
    for record in records:
        if statuses and record["status"] not in statuses:
            continue
        if not args.all and not statuses and record["status"] == "unreadable":
            continue
        if not args.all and record.get("debug"):
            continue
        if all(clause.matches(record) for clause in clauses):
            chosen.append(record)
    return chosen


def editable(record: dict[str, Any]) -> Path:
    """The directory of a record that can be edited (``tag``, ``note``); an unreadable one cannot."""
    if record["status"] == "unreadable":
        raise QueryError(f"run {record['dir']} has an unreadable {record['error']}; it cannot be edited")
    return Path(record["dir"])
