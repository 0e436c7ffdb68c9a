"""How ``rnnlab runs`` writes times, durations, values and metrics, and where it prints (plain or rich)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from rnnlab.runs.query import as_text
from rnnlab.runs.store import parse_time

STATUS_STYLES = {
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "interrupted": "yellow",
    "killed": "magenta",
    "unreadable": "red",
}


def local_time(text: str | None, now: datetime | None = None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    moment = moment.astimezone()
    now = now or datetime.now().astimezone()
    return moment.strftime("%m-%d %H:%M" if moment.year == now.year else "%Y-%m-%d %H:%M")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_duration(record: Mapping[str, Any]) -> str:
    """Stored duration; a running run shows its elapsed time so far (``12s…``)."""
    if record.get("status") == "running":
        started = parse_time(record.get("started"))
        if started is not None:
            return human_duration((datetime.now(timezone.utc) - started).total_seconds()) + "…"
    return human_duration(record.get("duration_s"))


def value_text(value: Any) -> str:
    return "-" if value is None else as_text(value)


def metric_text(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else as_text(value)


def on_terminal() -> bool:
    return sys.stdout.isatty()


def console():
    from rich.console import Console

    # Piped output (scripts, tests): do not squeeze the table into 80 columns.
    out = Console(highlight=False)
    return out if out.is_terminal else Console(highlight=False, width=100_000)
