"""``rnnlab runs [list]``: the latest runs as a table (plain text when piped, rich on a terminal), JSON or CSV."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rnnlab.runs.formatting import (
    STATUS_STYLES,
    console,
    local_time,
    metric_text,
    on_terminal,
    run_duration,
    value_text,
)
from rnnlab.runs.query import as_text, metric_names, short_id, sort_records, varying_params
from rnnlab.runs.record import find_records
from rnnlab.runs.subcommand import Subcommand, UsageError, add_roots, add_selection, roots_of, select


def limit_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; give an integer >= 0 (0 lists all)")
    return value


def warn_unreadable(records: list[dict[str, Any]], shown: list[dict[str, Any]]) -> None:
    hidden = [r for r in records if r["status"] == "unreadable" and r not in shown]
    if hidden:
        print(
            f"warning: {len(hidden)} unreadable {hidden[0]['error'].split(':')[0]} skipped "
            f"(e.g. {hidden[0]['dir']}); `--status unreadable` lists them",
            file=sys.stderr,
        )


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record.get("id"),
        "name": record.get("name"),
        "kind": record.get("kind"),
        "status": record.get("status"),
        "task": record.get("task"),
        "started": record.get("started"),
        "ended": record.get("ended"),
        "duration_s": record.get("duration_s"),
        "epoch": record.get("epoch"),
        "dir": record.get("dir"),
        "tags": ";".join(record.get("tags") or []),
        "note": record.get("note"),
    }


def write_csv(records: list[dict[str, Any]]) -> None:
    import csv

    params = sorted({k for r in records for k in r.get("params") or {}})
    metrics = metric_names(records)
    base = list(flat_row({}))
    taken = set(base) | set(params)
    metric_columns = [m if m not in taken else f"metrics.{m}" for m in metrics]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(base + params + metric_columns)
    for record in records:
        row = flat_row(record)
        writer.writerow(
            [value_text(row[k]) if row[k] is not None else "" for k in base]
            + [as_text(record["params"][k]) if k in (record.get("params") or {}) else "" for k in params]
            + [repr(v) if isinstance(v := (record.get("metrics") or {}).get(m), float) else "" for m in metrics]
        )


def list_table(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], set[int]]:
    """Header, rows and the indices of the metric columns (right-aligned) of the listing."""
    params = varying_params(records)
    metrics = metric_names(records)
    kinds = len({r.get("kind") for r in records}) > 1
    tags = any(r.get("tags") for r in records)
    header = ["id", "name", *(["kind"] if kinds else []), "status", "started", "duration", *params, *metrics]
    rows = []
    for record in records:
        row = [short_id(record), str(record.get("name")), *([str(record.get("kind"))] if kinds else [])]
        row += [record.get("status") or "-", local_time(record.get("started")), run_duration(record)]
        row += [value_text((record.get("params") or {}).get(key)) for key in params]
        row += [metric_text((record.get("metrics") or {}).get(name)) for name in metrics]
        rows.append(row + ([",".join(record.get("tags") or [])] if tags else []))
    metric_columns = set(range(len(header) - len(metrics), len(header)))
    return header + (["tags"] if tags else []), rows, metric_columns


def shrink_to_fit(widths: list[int], fixed: Sequence[int], available: int, narrowest: int = 5) -> list[int]:
    """Column widths within ``available``: the widest of the other columns give up a character at a time
    (rich crops them with an ellipsis), so on a narrow terminal the columns naming a run stay whole."""
    widths = list(widths)
    flexible = [i for i in range(len(widths)) if i not in fixed]
    for _ in range(max(0, sum(widths) - available)):
        widest = max(flexible, key=widths.__getitem__, default=None)
        if widest is None or widths[widest] <= narrowest:
            break
        widths[widest] -= 1
    return widths


def render_list(records: list[dict[str, Any]], caption: str = "") -> None:
    """A rich table on a terminal; piped (scripts, ``| grep``), the same columns as plain text, which spares
    importing and running rich: the listing stays within a small factor of the command's start-up."""
    header, rows, right = list_table(records)
    if not on_terminal():
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
        for line in (header, *rows):
            cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
            print("  ".join(cells).rstrip())
        return
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    status = header.index("status")
    out = console()
    widths = [max(cell_len(cell) for cell in column) for column in zip(header, *rows)]
    widths = shrink_to_fit(widths, fixed=range(status + 3), available=out.width - 2 * (len(widths) - 1))
    table = Table(box=None, header_style="bold", pad_edge=False, caption=caption or None, caption_justify="left")
    for i, (name, width) in enumerate(zip(header, widths)):  # widths given: rich's own measuring is slower
        table.add_column(name, no_wrap=True, justify="right" if i in right else "left", width=width)
    for row in rows:
        table.add_row(
            *(Text(cell, style=STATUS_STYLES.get(cell, "") if i == status else "") for i, cell in enumerate(row))
        )
    out.print(table)


class List(Subcommand):
    name = "list"
    help = "the latest runs (the default command)"
    order = 10

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_roots(parser)
        add_selection(parser)
        parser.add_argument(
            "--limit", type=limit_value, default=20, help="newest N after filtering (0 = all; default 20)"
        )
        parser.add_argument("--sort", default="-started", help="KEY or -KEY (descending); default -started")
        parser.add_argument("--json", action="store_true", help="full records as JSON")
        parser.add_argument("--csv", action="store_true", help="one row per run, every param and metric")

    def run(self, args: argparse.Namespace) -> int:
        if args.json and args.csv:
            raise UsageError("--json and --csv are alternatives; give one")
        records = find_records(*roots_of(args))
        matching = sort_records(select(records, args), args.sort)
        chosen = matching[: args.limit] if args.limit else matching
        warn_unreadable(records, chosen)
        if args.json:
            json.dump(chosen, sys.stdout, indent=1)
            print()
        elif args.csv:
            write_csv(chosen)
        elif not chosen:
            where = ", ".join(str(root) for root in roots_of(args))
            hidden = 0 if args.all else sum(bool(record.get("debug")) for record in records)
            note = f" ({hidden} debug run{'s' * (hidden != 1)} hidden: --all lists them)" if hidden else ""
            print(f"no runs under {where}" + (" match" if args.where or args.status else "") + note)
        else:
            shown = (
                f"{len(chosen)} of {len(matching)} runs (--limit 0 lists all)" if len(chosen) < len(matching) else ""
            )
            render_list(chosen, caption=shown)
        return 0
