"""Choosing runs from their records: ``--where`` clauses, ``--sort`` keys, RUN arguments, varying params.

Every user mistake raises ``QueryError`` with a one-line message naming the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rnnlab.runs.store import RECORD_FILE, STATUSES, find_records, read_record

# Record fields usable in --where and --sort besides params, metrics and dotted paths (git.dirty, parent.trial).
RECORD_KEYS = tuple("id name kind task status error epoch started ended duration_s host pid note debug dir".split())
ALIASES = {"duration": "duration_s"}
TAG_KEYS = ("tag", "tags")  # tag=a and tags=a both find a run tagged a (among others)
OPERATORS = ("!=", ">=", "<=", "==", "=", ">", "<")  # longest first, so ">=" is not read as ">"
_CLAUSE = re.compile(r"\s*([^\s=!<>]+)\s*(!=|>=|<=|==|=|>|<)\s*(.*?)\s*$")
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_MISSING = object()
MIN_PREFIX = 4
Ordered = TypeVar("Ordered", float, str)  # what a clause compares: two numbers, or two texts


class QueryError(ValueError):
    """A user mistake in a query; the message is the whole story (printed as ``error: <message>``)."""


def default_roots() -> list[Path]:
    """``logs/`` and ``multirun/`` under $RNNLAB_ROOT, else under the current directory."""
    base = Path(os.environ.get("RNNLAB_ROOT") or ".")
    return [base / "logs", base / "multirun"]


# ------------------------------------------------------------------------------------------- values


def lookup(record: Mapping[str, Any], key: str) -> Any:
    """The value ``key`` names in a record: a param, a metric, a record field, or a dotted path into the
    record (``git.dirty``); ``_MISSING`` when the record has none."""
    key = ALIASES.get(key, key)
    for section in ("params", "metrics"):
        values = record.get(section) or {}
        if key in values:
            return values[key]
    if key in RECORD_KEYS:
        return record.get(key, _MISSING)
    node: Any = record
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return _MISSING if isinstance(node, (Mapping, list)) else node


def has_key(records: Iterable[Mapping[str, Any]], key: str) -> bool:
    return (
        ALIASES.get(key, key) in RECORD_KEYS or key in TAG_KEYS or any(lookup(r, key) is not _MISSING for r in records)
    )


def known_keys(records: Sequence[Mapping[str, Any]], limit: int = 12) -> str:
    """A short list of keys a user could have meant, for error messages."""
    keys = dict.fromkeys(k for r in records for section in ("params", "metrics") for k in r.get(section) or {})
    names = list(keys)[:limit]
    more = ", ..." if len(keys) > limit else ""
    return ", ".join([*names, "status", "name", "tag", "started", "duration"]) + more


def as_text(value: Any) -> str:
    """How a stored value is shown and compared as a string: JSON spellings for booleans and null."""
    if value is None or value is _MISSING:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value is _MISSING:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------- --where


class Clause:
    """One ``KEY OP VALUE`` condition of ``--where``."""

    __slots__ = ("key", "op", "value")

    def __init__(self, key: str, op: str, value: str) -> None:
        self.key, self.op, self.value = key, op, value

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.key in TAG_KEYS:  # tags=a: a run whose tags include a
            has = self.value in (record.get("tags") or [])
            if self.op in ("=", "=="):
                return has
            return not has
        actual = lookup(record, self.key)
        if actual is _MISSING:
            return self.op == "!="  # a run without the key differs from any value
        left, right = as_number(actual), as_number(self.value)
        if left is not None and right is not None:
            return _compare_values(self.op, left, right)
        # else as text: true, false and null in any case
        text = self.value.lower() if isinstance(actual, bool) or actual is None else self.value
        return _compare_values(self.op, as_text(actual), text)


def _compare_values(op: str, left: Ordered, right: Ordered) -> bool:
    """``left OP right`` for one of OPERATORS, both sides numbers or both text."""
    if op in ("=", "=="):
        return left == right
    if op == "!=":
        return left != right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "<":
        return left < right
    return left <= right


def parse_where(text: str) -> list[Clause]:
    """``'model.cell=gru and val/acc_best>0.9'`` -> clauses (all must hold)."""
    clauses = []
    for part in _AND.split(text.strip()):
        match = _CLAUSE.fullmatch(part)
        if not match or not match.group(3):
            raise QueryError(
                f"--where {part.strip()!r} is not a condition; write KEY OP VALUE joined by 'and', "
                f"OP one of {' '.join(OPERATORS)}, e.g. 'model.cell=gru and val/acc>0.9'"
            )
        key, op, value = match.groups()
        if key in TAG_KEYS and op not in ("=", "==", "!="):
            raise QueryError(f"--where {part.strip()!r}: a tag takes = or !=, e.g. tag=baseline")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        clauses.append(Clause(key, op, value))
    return clauses


def check_keys(keys: Iterable[str], records: Sequence[Mapping[str, Any]], option: str) -> None:
    """Refuse a key no run has (most likely a typo): filtering on it would silently select nothing."""
    for key in keys:
        if records and not has_key(records, key):
            raise QueryError(
                f"{option} key {key!r} is not a param, metric or record field of any run; known: {known_keys(records)}"
            )


def parse_statuses(values: Iterable[str]) -> set[str]:
    statuses = {s.strip() for value in values for s in value.split(",") if s.strip()}
    for status in sorted(statuses):
        if status not in STATUSES:
            raise QueryError(f"--status {status!r} is not allowed; allowed: {', '.join(STATUSES)}")
    return statuses


# ------------------------------------------------------------------------------------------- --sort


def sort_records(records: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """Sort by ``key`` (ascending) or ``-key`` (descending); runs without the key go last either way, and
    numbers come before text when a key mixes them."""
    descending = spec.startswith("-")
    key = spec.lstrip("-+")
    if not key:
        raise QueryError(f"--sort {spec!r} names no key; e.g. --sort -val/acc_best or --sort started")
    check_keys([key], records, "--sort")
    numbers, texts, missing = [], [], []
    for record in records:
        value = lookup(record, key)
        if value is _MISSING or value is None:
            missing.append(record)
        elif (number := as_number(value)) is not None:
            numbers.append((number, record))
        else:
            texts.append((as_text(value), record))
    numbers.sort(key=lambda item: item[0], reverse=descending)
    texts.sort(key=lambda item: item[0], reverse=descending)
    return [record for _, record in numbers] + [record for _, record in texts] + missing


# ------------------------------------------------------------------------------------------- RUN arguments


def short_id(record: Mapping[str, Any]) -> str:
    return (record.get("id") or "-")[:8]


def describe(record: Mapping[str, Any]) -> str:
    return f"{short_id(record)} {record.get('name')} ({record.get('status')}, {record.get('dir')})"


def resolve_run(arg: str, roots: Sequence[Path], records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A RUN argument -> its record: a run directory (or its run.json), or an unambiguous id prefix."""
    path = Path(arg)
    if path.name == RECORD_FILE and path.is_file():
        path = path.parent
    if path.is_dir():
        if not (path / RECORD_FILE).is_file():
            raise QueryError(f"RUN {arg!r} is a directory without {RECORD_FILE}; give a run directory or an id prefix")
        return read_record(path)
    prefix = arg.lower()
    if not re.fullmatch(r"[0-9a-f]+", prefix) or len(prefix) < MIN_PREFIX:
        raise QueryError(
            f"RUN {arg!r} is neither a run directory nor an id prefix ({MIN_PREFIX} to 32 hex characters, "
            "as in the first column of `rnnlab runs`)"
        )
    if records is None:
        records = find_records(*roots)
    matches = [r for r in records if (r.get("id") or "").startswith(prefix)]
    if not matches:
        where = ", ".join(str(root) for root in roots)
        raise QueryError(f"RUN {arg!r} matches no run id under {where}; `rnnlab runs --all` lists them")
    if len(matches) > 1:
        shown = "; ".join(describe(r) for r in matches[:3]) + ("; ..." if len(matches) > 3 else "")
        raise QueryError(f"RUN {arg!r} is ambiguous: {len(matches)} runs match ({shown}); give more characters")
    return matches[0]


# ------------------------------------------------------------------------------------------- columns


def metric_names(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({name for r in records for name in r.get("metrics") or {}})
