"""``rnnlab runs``: find, compare and rerun runs from their records (run.json), never from TensorBoard files.

Each subcommand is a module of ``rnnlab.runs.commands`` (``rnnlab.runs.subcommand``); this module finds them,
parses the command line and turns every user mistake into one ``error: ...`` line on stderr, exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

from rnnlab.runs.query import QueryError
from rnnlab.runs.subcommand import REGISTRY, OneLineParser, Subcommand, UsageError

USAGE_EXIT = 2
DEFAULT_SUBCOMMAND = "list"
COMMANDS_PACKAGE = "rnnlab.runs.commands"


def subcommands() -> dict[str, Subcommand]:
    """Every subcommand, in ``--help`` order: importing each module of ``rnnlab.runs.commands`` registers it."""
    package = importlib.import_module(COMMANDS_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{COMMANDS_PACKAGE}.{module.name}")
    ordered = sorted(REGISTRY.values(), key=lambda command: (command.order, command.name))
    return {command.name: command() for command in ordered}


def runs_parser(commands: dict[str, Subcommand], prog: str = "rnnlab runs") -> OneLineParser:
    parser = OneLineParser(prog=prog, description="Find, compare and rerun runs from their records (run.json).")
    choices = parser.add_subparsers(dest="command", metavar="{" + ",".join(commands) + "}")
    for name, command in commands.items():
        sub = choices.add_parser(name, help=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def attach_sort_values(argv: list[str]) -> list[str]:
    """``--sort -val/acc`` -> ``--sort=-val/acc``: argparse would take a descending key for an option."""
    attached, args = [], iter(argv)
    for arg in args:
        value = next(args, None) if arg == "--sort" else None
        attached.append(arg if value is None else f"--sort={value}")
    return attached


def runs_main(argv: Sequence[str] | None = None, prog: str = "rnnlab runs") -> int:
    """``rnnlab runs [SUBCOMMAND] ...``; without a subcommand it lists."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = subcommands()
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_SUBCOMMAND)
    argv = attach_sort_values(argv)
    try:
        args = runs_parser(commands, prog).parse_args(argv)
        return args.handler(args)
    except (UsageError, QueryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_EXIT
    except BrokenPipeError:  # `rnnlab runs | head`
        sys.stderr.close()
        return 0
    except OSError as error:  # a run directory that cannot be read, written or deleted
        print(f"error: {error}", file=sys.stderr)
        return 1
