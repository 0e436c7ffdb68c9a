"""The one way rnnlab talks to its user on the console: a leaf (imports nothing of rnnlab).

``say`` prints what a command reports (``[rnnlab] ...`` on stdout, where summary lines and tables go);
``warn`` prints a notice the user should read (``warning: ...`` on stderr). Errors that end a command are
``CommandError`` (``rnnlab.errors``), printed once as ``error: ...`` by the entry point.
"""

from __future__ import annotations

import sys

PREFIX = "[rnnlab]"


def say(message: str) -> None:
    """``[rnnlab] <message>`` on stdout, flushed (a sweep's parent and its trials share the console)."""
    print(f"{PREFIX} {message}", flush=True)


def show(text: str) -> None:
    """A block the user asked for (a table, a report, a text sample), verbatim on stdout."""
    print(text, flush=True)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
