"""Error types and the one-line messages users read: a leaf (imports nothing of rnnlab).

A command prints a ``CommandError`` alone, as ``error: <message>``: the message names the bad value and
what is allowed, so no traceback is needed.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Iterable
from numbers import Real
from typing import Any, TypeVar

Raised = TypeVar("Raised", bound=BaseException)


class CommandError(Exception):
    """An error whose one-line message says all a user needs: the command prints it alone (no traceback)."""


class ConfigError(CommandError, ValueError):
    """A config value that is not allowed; the message is one line naming it and what is allowed."""


def not_allowed(key: str, value: Any, allowed: Iterable[Any], *, quote: bool = True, sort: bool = True) -> str:
    """``key='value' is not allowed; allowed: a, b, c`` (the message every "one of" check uses)."""
    names = [str(a) for a in allowed]
    shown = repr(value) if quote else str(value)
    return f"{key}={shown} is not allowed; allowed: {', '.join(sorted(names) if sort else names)}"


def check_one_of(key: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ``ConfigError`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(not_allowed(key, value, allowed))


def check_number(
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    low_inclusive: bool = False,
    high: float | None = None,
    high_inclusive: bool = False,
    allowed: str | None = None,
) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number (an integer) in the given range; ``allowed``,
    where given, is what every refusal says is allowed (``"an integer >= 1, or null"``)."""

    def refuse(must: str) -> ConfigError:
        return ConfigError(f"{key}={value!r} is not allowed; must be {allowed or must}")

    ok_type = isinstance(value, int) if integer else isinstance(value, Real)
    if isinstance(value, bool) or not ok_type:
        raise refuse("an integer" if integer else "a number")
    if isinstance(value, float) and not math.isfinite(value):  # inf trains to NaN, NaN fails inside torch
        raise refuse("a finite number")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise refuse(f"{'>=' if low_inclusive else '>'} {low}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise refuse(f"{'<=' if high_inclusive else '<'} {high}")


def check_flag(key: str, value: Any, *also: Any) -> None:
    """Raise ``ConfigError`` unless ``value`` is true or false (or one of ``also``): a string such as ``maybe``
    would otherwise count as true."""
    if not isinstance(value, bool) and value not in also:
        options = ["true", "false", *("null" if other is None else repr(other) for other in also)]
        raise ConfigError(f"{key}={value!r} is not allowed; must be {', '.join(options[:-1])} or {options[-1]}")


def metric_not_logged(name: str, logged: Iterable[str], key: str = "optimized_metric") -> ConfigError:
    """The error for a metric a run was asked to report but never logged."""
    return ConfigError(f"{key}={name!r} was not logged; logged: {', '.join(sorted(logged))}")


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``: one line for logs, records and trial attributes."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def raised_from(error: BaseException | None, kind: type[Raised]) -> Raised | None:
    """The first ``kind`` among ``error`` and the errors it was raised from (``__cause__``, else
    ``__context__``), else None: e.g. the OSError under a library's wrapper, a CommandError under OmegaConf's."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` was raised from a full disk (or quota): writing more there would fail too."""
    fault = raised_from(error, OSError)
    return fault is not None and fault.errno in (errno.ENOSPC, errno.EDQUOT)


# Exit codes of an interrupted command, as a shell reports a command stopped by the signal (docs/usage.md).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit) raised where Ctrl-C would be: every clean-up that runs for
    Ctrl-C runs for it; only the exit code differs (143, not 130)."""


def interrupting_signal(error: BaseException | None) -> str | None:
    """``"SIGINT"`` or ``"SIGTERM"`` when ``error`` (or an error it was raised from) is an interruption, else
    None. Lightning turns Ctrl-C into ``SystemExit(1)`` raised from the KeyboardInterrupt, and SIGTERM into
    its ``SIGTERMException`` (known by name: no Lightning import in a leaf)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Terminated) or type(error).__name__ == "SIGTERMException":
            return "SIGTERM"
        if isinstance(error, KeyboardInterrupt):
            return "SIGINT"
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
