"""The ``rnnlab`` console script: ``rnnlab COMMAND ...`` dispatches on its first word (``COMMANDS``).

The top of the import layering (tests/test_layout.py), so a command of any package (``rnnlab study``) can join.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from rnnlab.runs.cli import USAGE_EXIT, runs_main

COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "runs": (runs_main, "find, compare and rerun runs (rnnlab runs --help)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``rnnlab COMMAND ...``; ``rnnlab --help`` lists the commands."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        lines = [f"  {name:<6} {about}" for name, (_, about) in COMMANDS.items()]
        print(f"usage: rnnlab {{{','.join(COMMANDS)}}} ...\n\n" + "\n".join(lines))
        return 0
    command = COMMANDS.get(argv[0]) if argv else None
    if command is None:
        given = f"command {argv[0]!r} is not allowed" if argv else "a command is needed"
        print(f"error: {given}; allowed: {', '.join(COMMANDS)} (rnnlab --help)", file=sys.stderr)
        return USAGE_EXIT
    return command[0](argv[1:])
