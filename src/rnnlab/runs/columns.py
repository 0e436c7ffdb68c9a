"""The columns of ``rnnlab runs``: which exist for a set of runs, in what order, how each is written, and which
fit a terminal.

By default the listing shows the name, status and parent of each run, the settings that vary among the
listed runs (``rnnlab.runs.settings``: no plumbing, paths or copies) and the key metrics, choosing columns in
order of importance until the width is used: columns are left out whole (the caption names how many), never
cut. ``--columns`` picks, ``--wide`` shows every one.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from rnnlab.runs.formatting import local_time, run_duration, value_text
from rnnlab.runs.query import as_text, has_key, lookup, metric_names, short_id
from rnnlab.runs.settings import KEY_SETTINGS, record_settings, short_names

_TRIAL = re.compile(r"^trial_(\d+)$")
GAP = 2  # spaces between columns
# The record fields a listing can show (--columns), besides settings and metrics.
FIELDS = ("id", "name", "kind", "status", "parent", "task", "started", "duration", "epoch", "tags", "note")


@dataclass
class Column:
    key: str  # what --columns names it by
    label: str  # its header
    cells: list[str]
    right: bool = False  # numbers: right-aligned

    @property
    def width(self) -> int:
        return max(len(self.label), *(len(cell) for cell in self.cells)) if self.cells else len(self.label)


# ------------------------------------------------------------------------------------------- parents


def _from_path(run_dir: str) -> tuple[str | None, str | None, int | None]:
    """(kind, name, trial) of a run directory below ``multirun/``: ``<task>/<study>/trial_<n>`` (a sweep),
    ``compare/<task>/<time>/<n>``, ``study/<task>/<name>/...``; (None, None, None) elsewhere."""
    parts = run_dir.replace(os.sep, "/").split("/")
    trial = next((int(m.group(1)) for part in parts if (m := _TRIAL.match(part))), None)
    if "multirun" not in parts:
        return None, None, trial
    rest = parts[len(parts) - parts[::-1].index("multirun") :]
    if rest[:1] in (["compare"], ["study"]) and len(rest) > 2:
        return rest[0], rest[2], trial
    return ("sweep" if trial is not None else "multirun"), (rest[1] if len(rest) > 1 else None), trial


def parent_of(record: Mapping[str, Any]) -> tuple[str, str]:
    """(group, label) of the sweep, study or compare a run belongs to: ``sweep mnist1d-gru`` and
    ``sweep mnist1d-gru #3``; from the record's ``parent``, else from where the run lives; ("", "") for none."""
    parent = record.get("parent") or {}
    path_kind, path_name, path_trial = _from_path(str(record.get("dir") or ""))
    kind = parent.get("kind") or path_kind
    if not kind:
        return "", ""
    name = parent.get("study") or (os.path.basename(parent["dir"]) if parent.get("dir") else None) or path_name
    trial = parent.get("trial") if parent.get("trial") is not None else path_trial
    group = f"{kind} {name}" if name else kind
    return group, group + (f" #{trial}" if trial is not None else "")


# ------------------------------------------------------------------------------------------- numbers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_format(values: Sequence[Any]) -> Callable[[Any], str] | None:
    """One format for a column of numbers (None: the column is not all numbers): whole numbers as such,
    fixed decimals for moderate magnitudes (4 significant digits of the largest), else scientific."""
    numbers = [v for v in values if v is not None]
    if not numbers or not all(_is_number(v) for v in numbers):
        return None
    finite = [abs(v) for v in numbers if math.isfinite(v)]
    largest = max(finite, default=0.0)
    if all(isinstance(v, int) for v in numbers) or (largest >= 100 and all(float(v).is_integer() for v in finite)):
        return lambda v: "-" if v is None else f"{int(v)}" if math.isfinite(v) else str(v)
    if largest == 0 or 0.01 <= largest < 1e5:
        decimals = 4 if largest == 0 else min(4, max(0, 3 - math.floor(math.log10(largest))))
        return lambda v: "-" if v is None else f"{v:.{decimals}f}"
    return lambda v: "-" if v is None else f"{v:.2e}"


def _cells(values: Sequence[Any]) -> tuple[list[str], bool]:
    fmt = number_format(values)
    return ([fmt(v) for v in values], True) if fmt else ([value_text(v) for v in values], False)


def record_column(records: Sequence[Mapping[str, Any]], key: str) -> Column | None:
    """A column of any value ``--where`` can name (``slurm.job_id``, ``git.dirty``), or None where no record has
    one."""
    if not any(has_key([r], key) for r in records):
        return None
    return Column(key, key, *_cells([lookup(r, key) if has_key([r], key) else None for r in records]))


# ------------------------------------------------------------------------------------------- columns


def key_metrics(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics a listing shows by default: what the runs optimise (``optimized_metric``, else the
    ``*_best`` ones), then each one's test counterpart (``val/acc_best`` -> ``test/acc``)."""
    present = metric_names(records)
    optimised = {
        str(r["params"]["optimized_metric"]) for r in records if (r.get("params") or {}).get("optimized_metric")
    }
    best = [m for m in present if m in optimised or m.endswith("_best")]
    tests = ["test/" + m.split("/", 1)[-1].removesuffix("_best") for m in best]
    return [*best, *(m for m in dict.fromkeys(tests) if m in present and m not in best)]


def varying_settings(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The setting keys that differ among the ``records`` that have them, key settings first;
    and each record's settings."""
    shown = [record_settings(r) for r in records]
    keys = dict.fromkeys(k for s in shown for k in s)
    # Among the runs that have it: eval and generate runs, or another task's, have no model.* or data.* keys.
    varying = [k for k in keys if len({as_text(s[k]) for s in shown if k in s}) > 1]
    first = [k for k in KEY_SETTINGS if k in varying]
    return [*first, *(k for k in varying if k not in first)], shown


def all_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, Column]:
    """Every column a listing of ``records`` could show, by key, in display order."""
    settings_keys, shown = varying_settings(records)
    labels = short_names(settings_keys)
    parents = [parent_of(r)[1] for r in records]
    field_values: dict[str, list[Any]] = {
        "id": [short_id(r) for r in records],
        "name": [str(r.get("name")) for r in records],
        "kind": [r.get("kind") or "-" for r in records],
        "status": [r.get("status") or "-" for r in records],
        "parent": [p or "-" for p in parents],
        "task": [r.get("task") or "-" for r in records],
        "started": [local_time(r.get("started")) for r in records],
        "duration": [run_duration(r) for r in records],
        "epoch": [r.get("epoch") for r in records],
    }
    columns = {key: Column(key, key, *_cells(values)) for key, values in field_values.items()}
    for key in settings_keys:
        columns[key] = Column(key, labels[key], *_cells([s.get(key) for s in shown]))
    metrics = key_metrics(records)
    for name in [*metrics, *(m for m in metric_names(records) if m not in metrics)]:
        columns[name] = Column(name, name, *_cells([(r.get("metrics") or {}).get(name) for r in records]))
    columns["tags"] = Column("tags", "tags", [",".join(r.get("tags") or []) or "-" for r in records])
    columns["note"] = Column("note", "note", [str(r.get("note") or "") or "-" for r in records])
    return columns


def default_keys(records: Sequence[Mapping[str, Any]], columns: Mapping[str, Column]) -> tuple[list[str], set[str]]:
    """The columns worth showing, most important first (what a narrow terminal keeps), and the essential ones
    (the first key settings and the optimised metrics), for which the name and parent columns are elided."""
    settings_keys, _ = varying_settings(records)
    has = {key: any(cell != "-" for cell in columns[key].cells) for key in ("parent", "tags", "note")}
    key_settings = [k for k in settings_keys if k in KEY_SETTINGS]
    metrics = key_metrics(records)
    primary = [m for m in metrics if not m.startswith("test/")]
    order = [
        "id",
        "name",
        "status",
        *(["parent"] if has["parent"] else []),
        *key_settings[:3],
        *primary,
        *key_settings[3:],
        *(m for m in metrics if m not in primary),
        *(["kind"] if len(set(columns["kind"].cells)) > 1 else []),
        *(["tags"] if has["tags"] else []),
        *(k for k in settings_keys if k not in key_settings),
        *(["note"] if has["note"] else []),
    ]
    return order, {*key_settings[:3], *primary}


ELIDABLE = ("name", "parent")  # long texts that tell runs apart by their start and end
NARROWEST = 20  # an elided name or parent keeps this many characters


def fit(columns: Sequence[Column], width: int, essential: Set[str] = frozenset(), must: int = 3) -> list[Column]:
    """The columns, in priority order, that fit ``width``: the first ``must`` always; each other one if it fits,
    an essential one also by eliding the name and parent columns (down to ``NARROWEST``); the others are
    left out whole."""
    chosen = list(columns[:must])
    widths = {id(c): c.width for c in columns}

    def used(extra: Sequence[Column] = ()) -> int:
        shown = [*chosen, *extra]
        return sum(widths[id(c)] for c in shown) + GAP * (len(shown) - 1)

    for column in columns[must:]:
        over = used([column]) - width
        if over > 0 and column.key in essential:
            before = dict(widths)
            for elidable in sorted((c for c in chosen if c.key in ELIDABLE), key=lambda c: -widths[id(c)]):
                cut = min(over, max(0, widths[id(elidable)] - max(NARROWEST, len(elidable.label))))
                widths[id(elidable)] -= cut
                over -= cut
            if over > 0:  # no room even so: undo
                widths = before
        if over <= 0:
            chosen.append(column)
    for column in chosen:
        if widths[id(column)] < column.width:
            column.cells = [elide(cell, widths[id(column)]) for cell in column.cells]
    return chosen


def elide(text: str, width: int) -> str:
    """``text`` within ``width`` characters, its middle replaced by ``…`` (the start and end tell runs apart)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]
