"""``rnnlab runs [list]``: the latest runs as a table (plain text when piped, rich on a terminal), JSON or CSV."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rnnlab.runs.columns import FIELDS, Column, all_columns, default_keys, fit, parent_of, record_column
from rnnlab.runs.formatting import STATUS_STYLES, console, on_terminal, value_text
from rnnlab.runs.query import as_text, metric_names, sort_records
from rnnlab.runs.store import find_records
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


DEFAULT_WIDTH = 120  # piped output fits a common terminal; on a terminal, its own width


def chosen_columns(
    records: list[dict[str, Any]], wanted: list[str] | None, wide: bool, width: int
) -> tuple[list[Column], int]:
    """The columns to show, in display order: ``--columns`` as given, ``--wide`` all, else the default ones
    that fit ``width`` (``fit``: whole columns by importance); and how many default ones were left out."""
    columns = all_columns(records)
    if wanted:
        labels = {column.label: key for key, column in columns.items()}
        for name in wanted:  # any other value of the records, by the name --where gives it
            extra = None if name in columns or name in labels else record_column(records, name)
            if extra is not None:
                columns[name] = extra
        unknown = [name for name in wanted if name not in columns and name not in labels]
        if unknown:
            allowed = ", ".join([*FIELDS, *(c.label for k, c in columns.items() if k not in FIELDS)][:30])
            raise UsageError(f"--columns {unknown[0]!r} is not a column of these runs; allowed: {allowed}")
        return [columns[labels.get(name, name)] for name in wanted], 0
    if wide:
        return list(columns.values()), 0
    keys, essential = default_keys(records, columns)
    shown = fit([columns[key] for key in keys], width, essential)
    order = list(columns)
    return sorted(shown, key=lambda column: order.index(column.key)), len(keys) - len(shown)


def render_list(
    records: list[dict[str, Any]],
    caption: str = "",
    wanted: list[str] | None = None,
    wide: bool = False,
    group: bool = False,
) -> None:
    """A rich table on a terminal; piped (scripts, ``| grep``), the same columns as plain text, which spares
    importing and running rich: the listing stays within a small factor of the command's start-up.
    ``group``: runs of one parent (sweep, study, compare) together, under a line naming it."""
    terminal = on_terminal()
    width = console().width if terminal else DEFAULT_WIDTH
    columns, hidden = chosen_columns(records, wanted, wide, width)
    if hidden > 0:
        more = f"{hidden} more column{'s' * (hidden != 1)}: --wide shows all, --columns chooses"
        caption = f"{caption}; {more}" if caption else more
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(parent_of(record)[0] if group else "", []).append(index)
    if not terminal:
        widths = [column.width for column in columns]
        header = [c.label.rjust(w) if c.right else c.label.ljust(w) for c, w in zip(columns, widths)]
        print("  ".join(header).rstrip())
        for name, indices in groups.items():
            if group:
                print(f"{name or '(no parent)'}: {len(indices)} run{'s' * (len(indices) != 1)}")
            for i in indices:
                cells = [c.cells[i].rjust(w) if c.right else c.cells[i].ljust(w) for c, w in zip(columns, widths)]
                print("  ".join(cells).rstrip())
        if caption:
            print(caption)
        return
    render_rich(columns, groups, group, caption)


def render_rich(columns: list[Column], groups: dict[str, list[int]], group: bool, caption: str) -> None:
    """The rich table; grouped, the header and then each parent's line and its rows (same column widths)."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    status = next((i for i, column in enumerate(columns) if column.key == "status"), None)

    def table(rows: list[int], header: bool, caption: str | None = None) -> Table:
        made = Table(box=None, header_style="bold", pad_edge=False, show_header=header, caption=caption)
        made.caption_justify = "left"
        for column in columns:  # widths given: rich's own measuring is slower
            made.add_column(column.label, no_wrap=True, justify="right" if column.right else "left", width=column.width)
        for i in rows:
            cells = [column.cells[i] for column in columns]
            made.add_row(*(Text(c, style=STATUS_STYLES.get(c, "") if j == status else "") for j, c in enumerate(cells)))
        return made

    if not group:
        out.print(table(next(iter(groups.values())), header=True, caption=caption or None))
        return
    out.print(table([], header=True))
    for number, (name, rows) in enumerate(groups.items()):
        out.print(Text(f"{name or '(no parent)'}: {len(rows)} run{'s' * (len(rows) != 1)}", style="bold"))
        out.print(table(rows, header=False, caption=caption if number == len(groups) - 1 and caption else None))


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
        parser.add_argument(
            "--columns", metavar="A,B,...", help="the columns to show: id, name, status, parent, ..., settings, metrics"
        )
        parser.add_argument("--wide", action="store_true", help="every column (varying settings, metrics, fields)")
        parser.add_argument("--group", choices=["parent"], help="runs of one sweep, study or compare together")

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
            wanted = [name.strip() for name in args.columns.split(",") if name.strip()] if args.columns else None
            render_list(chosen, caption=shown, wanted=wanted, wide=args.wide, group=args.group == "parent")
        return 0
