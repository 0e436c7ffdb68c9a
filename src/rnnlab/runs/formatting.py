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


def run_duration(record: Mapping[str, Any], now: datetime | None = None) -> str:
    """Stored duration (over all its sessions); a running run shows its time so far (``12s…``): a resumed one
    its earlier sessions' time (its stored ``duration_s``) plus this session's, not the time since it began."""
    if record.get("status") == "running":
        resumes = record.get("resumes") or []
        began = parse_time(resumes[-1].get("started") if resumes else record.get("started"))
        if began is not None:
            earlier = float(record.get("duration_s") or 0.0) if resumes else 0.0
            elapsed = ((now or datetime.now(timezone.utc)) - began).total_seconds()
            return human_duration(earlier + elapsed) + "…"
    return human_duration(record.get("duration_s"))


def env_text(record: Mapping[str, Any]) -> str:
    """The environment variables a run was made under, as a shell prefix (``RNNLAB_BUDGET=tiny``); "" for none."""
    import shlex

    return " ".join(f"{key}={shlex.quote(str(value))}" for key, value in (record.get("env") or {}).items())


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
