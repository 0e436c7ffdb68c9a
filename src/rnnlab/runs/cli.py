"""``rnnlab runs``: find, compare and rerun runs from their records (run.json), never from TensorBoard files.

``rnnlab`` dispatches on its first word (``COMMANDS``), so more commands (``rnnlab study``) can join.
Every user mistake ends the command with one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnnlab.runs.query import (
    QueryError,
    as_text,
    check_keys,
    default_roots,
    describe,
    metric_names,
    parse_statuses,
    parse_where,
    resolve_run,
    short_id,
    sort_records,
    varying_params,
)
from rnnlab.runs.record import PATCH_FILE, STATUSES, edit_record, find_records, git_state, parse_time

USAGE_EXIT = 2
STATUS_STYLES = {
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "interrupted": "yellow",
    "killed": "magenta",
    "unreadable": "red",
}


class UsageError(Exception):
    """A user mistake: printed as one ``error:`` line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but its errors are one ``error:`` line (no usage block), like the rest of rnnlab."""

    def error(self, message: str):
        raise UsageError(message)


# ------------------------------------------------------------------------------------------- formatting


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


def run_duration(record: dict[str, Any]) -> str:
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


# ------------------------------------------------------------------------------------------- selection


def add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--where", action="append", default=[], metavar="COND", help="e.g. 'model.cell=gru and val/acc>0.9'"
    )
    parser.add_argument(
        "--status",
        action="append",
        default=[],
        help=f"repeatable or comma list of: {', '.join(STATUSES)}",
    )
    parser.add_argument("--all", action="store_true", help="include debug runs and unreadable records")


def add_roots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        action="append",
        type=Path,
        metavar="PATH",
        help="where to look for runs (repeatable; default: logs/ and multirun/ under $RNNLAB_ROOT or here)",
    )


def roots_of(args: argparse.Namespace) -> list[Path]:
    if not args.dir:
        return default_roots()
    for root in args.dir:
        if not root.exists():
            raise UsageError(f"--dir {str(root)!r} does not exist; give a directory holding run directories")
    return list(args.dir)


def select(records: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Apply --status, --where and the debug/unreadable default: what `runs` lists and `rm --where` removes."""
    statuses = parse_statuses(args.status)
    clauses = [clause for text in args.where for clause in parse_where(text)]
    check_keys([clause.key for clause in clauses], [r for r in records if r["status"] != "unreadable"], "--where")
    chosen = []
    for record in records:
        if statuses and record["status"] not in statuses:
            continue
        if not args.all and not statuses and record["status"] == "unreadable":
            continue
        if not args.all and record.get("debug"):
            continue
        if all(clause.matches(record) for clause in clauses):
            chosen.append(record)
    return chosen


def warn_unreadable(records: list[dict[str, Any]], shown: list[dict[str, Any]]) -> None:
    hidden = [r for r in records if r["status"] == "unreadable" and r not in shown]
    if hidden:
        print(
            f"warning: {len(hidden)} unreadable {hidden[0]['error'].split(':')[0]} skipped "
            f"(e.g. {hidden[0]['dir']}); `--status unreadable` lists them",
            file=sys.stderr,
        )


# ------------------------------------------------------------------------------------------- list


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


def cmd_list(args: argparse.Namespace) -> int:
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
        shown = f"{len(chosen)} of {len(matching)} runs (--limit 0 lists all)" if len(chosen) < len(matching) else ""
        render_list(chosen, caption=shown)
    return 0


# ------------------------------------------------------------------------------------------- show, diff


def cmd_show(args: argparse.Namespace) -> int:
    import shlex

    record = resolve_run(args.run, roots_of(args))
    if args.json:
        json.dump(record, sys.stdout, indent=1)
        print()
        return 0
    fields = (
        "id name kind task status error epoch dir started ended duration_s heartbeat host pid devices note tags debug"
    )
    lines = []
    for key in fields.split():
        if key in record:
            lines.append(f"{key:<12}{value_text(record[key])}")
        if key == "status" and record.get("status") == "killed":
            lines[-1] += " (recorded as running, but its process is gone or its heartbeat stopped)"
    parent = record.get("parent")
    if parent:
        trial = f" (study {parent['study']}, trial {parent['trial']})" if parent.get("study") else ""
        lines.append(f"{'parent':<12}{parent.get('kind')} {parent.get('dir')}{trial}")
    git = record.get("git")
    if git:
        dirty = "dirty" if git.get("dirty") else "clean"
        if git.get("patch"):
            dirty += f", changes in {Path(record['dir']) / git['patch']}"
        lines.append(f"{'git':<12}{git.get('commit')} ({dirty})")
    if record.get("command"):
        lines.append(f"{'command':<12}{shlex.join(record['command'])}")
        lines.append(f"{'overrides':<12}{shlex.join(record.get('overrides') or [])}")
    if record.get("versions"):
        lines.append(f"{'versions':<12}" + ", ".join(f"{k} {v}" for k, v in record["versions"].items()))
    for section in ("checkpoints", "params", "metrics"):
        values = record.get(section) or {}
        if values:
            lines.append(f"{section}:")
            width = max(len(key) for key in values) + 2
            text = metric_text if section == "metrics" else value_text
            lines += [f"  {key:<{width}}{text(value)}" for key, value in values.items()]
    for number, entry in enumerate(record.get("resumes") or [], 1):
        git = entry.get("git")
        lines.append(
            f"resume {number}: {local_time(entry.get('started'))} .. {local_time(entry.get('ended'))} "
            f"{entry.get('status')} {shlex.join(entry.get('overrides') or [])}"
            + (f" (git {git['commit'][:12]}{' dirty' if git['dirty'] else ''})" if git else "")
            + (f" error: {entry['error']}" if entry.get("error") else "")
        )
    print("\n".join(lines))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    roots = roots_of(args)
    records = find_records(*roots)
    first, second = (resolve_run(arg, roots, records) for arg in (args.first, args.second))
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    for record in (first, second):
        table.add_column(f"{short_id(record)} {record.get('name')}", no_wrap=True)

    def git(record: dict[str, Any]) -> str:
        state = record.get("git")
        return "-" if not state else f"{(state.get('commit') or '')[:12]}{' dirty' if state.get('dirty') else ''}"

    for label, get in (
        ("status", lambda r: value_text(r.get("status"))),
        ("started", lambda r: local_time(r.get("started"))),
        ("duration", run_duration),
        ("epoch", lambda r: value_text(r.get("epoch"))),
        ("git", git),
    ):
        table.add_row(label, get(first), get(second))
    params_a, params_b = first.get("params") or {}, second.get("params") or {}
    differing = [k for k in sorted(set(params_a) | set(params_b)) if params_a.get(k, ...) != params_b.get(k, ...)]
    table.add_section()
    table.add_row(Text("params", style="bold"), "", "")
    for key in differing:
        table.add_row(key, value_text(params_a.get(key)), value_text(params_b.get(key)))
    if not differing:
        table.add_row(Text(f"(all {len(params_a)} equal)", style="dim"), "", "")
    table.add_section()
    table.add_row(Text("metrics", style="bold"), "", "")
    metrics_a, metrics_b = first.get("metrics") or {}, second.get("metrics") or {}
    for name in metric_names([first, second]):
        table.add_row(name, metric_text(metrics_a.get(name)), metric_text(metrics_b.get(name)))
    console().print(table)
    return 0


# ------------------------------------------------------------------------------------------- rerun


def entry_command(command: Sequence[str]) -> list[str]:
    """``[python, *python options, script or -m module]`` of a recorded command, without its arguments
    (for a command that is not Python's, such as a console script: the program alone)."""
    if not command:
        return []
    entry, rest = [command[0]], list(command[1:])
    if not Path(command[0]).name.startswith("python"):
        return entry
    while rest:
        arg = rest.pop(0)
        entry.append(arg)
        if arg in ("-m", "-X", "-W", "-c") and rest:
            entry.append(rest.pop(0))
            if arg in ("-m", "-c"):
                break
        elif not arg.startswith("-"):
            break
    return entry


def rerun_command(record: dict[str, Any]) -> list[str]:
    """The entry point with the run's original overrides (a sweep trial's own, without the sweep's ``-m``)."""
    entry = entry_command(record.get("command") or [])
    if not entry:
        raise QueryError(f"run {short_id(record)} has no recorded command to rerun")
    return [*entry, *(record.get("overrides") or [])]


def git_warning(record: dict[str, Any], cwd: Path) -> str | None:
    recorded = record.get("git")
    if not recorded:
        return None
    current = git_state(cwd)

    def state(git: dict[str, Any] | None) -> str:
        return "no git checkout" if not git else f"{git['commit'][:12]} ({'dirty' if git['dirty'] else 'clean'})"

    if current and current["commit"] == recorded["commit"] and not current["dirty"] and not recorded["dirty"]:
        return None
    patch = f"; its changes: {Path(record['dir']) / PATCH_FILE}" if recorded.get("patch") else ""
    return f"warning: this checkout is {state(current)}, the run used {state(recorded)}; results may differ{patch}"


def cmd_rerun(args: argparse.Namespace) -> int:
    import shlex
    import subprocess

    record = resolve_run(args.run, roots_of(args))
    command = rerun_command(record)
    shown = ["python" if Path(command[0]).name.startswith("python") else command[0], *command[1:]]
    recorded_cwd = Path(record.get("cwd") or ".")
    cwd = recorded_cwd if recorded_cwd.is_dir() else Path(default_roots()[0]).parent
    warning = git_warning(record, cwd)
    if warning:
        print(warning, file=sys.stderr)
    print(shlex.join(shown))
    if not args.exec:
        return 0
    if Path(command[0]).name.startswith("python"):
        command[0] = sys.executable
    sys.stdout.flush()
    return subprocess.run(command, cwd=cwd).returncode


# ------------------------------------------------------------------------------------------- edits


def editable(record: dict[str, Any]) -> Path:
    if record["status"] == "unreadable":
        raise QueryError(f"run {record['dir']} has an unreadable {record['error']}; it cannot be edited")
    return Path(record["dir"])


def cmd_tag(args: argparse.Namespace) -> int:
    record = resolve_run(args.run, roots_of(args))
    tag = args.text.strip()
    if not tag or "," in tag:
        raise UsageError(f"tag {args.text!r} is not allowed; a tag is non-empty text without commas")
    if args.remove and tag not in (record.get("tags") or []):
        tags = ", ".join(record.get("tags") or []) or "none"
        raise UsageError(f"run {short_id(record)} has no tag {tag!r}; its tags: {tags}")

    def change(data: dict[str, Any]) -> None:
        tags = [t for t in data.get("tags") or [] if t != tag]
        data["tags"] = tags if args.remove else [*tags, tag]

    data = edit_record(editable(record), change)
    print(f"{short_id(record)} {record.get('name')}: tags {', '.join(data['tags']) or '(none)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    record = resolve_run(args.run, roots_of(args))
    edit_record(editable(record), lambda data: data.update(note=args.text))
    print(f"{short_id(record)} {record.get('name')}: note {args.text!r}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    import shutil

    roots = roots_of(args)
    if not args.runs and not args.where and not args.status:
        raise UsageError("rm needs RUN arguments or --where/--status; nothing is deleted by default")
    records = find_records(*roots)
    chosen = {r["dir"]: r for arg in args.runs for r in [resolve_run(arg, roots, records)]}
    if args.where or args.status:
        chosen.update({r["dir"]: r for r in select(records, args)})
    # Runs nested in a chosen directory (its eval/generate outputs) go with it.
    for run_dir in list(chosen):
        chosen.update({r["dir"]: r for r in find_records(run_dir)})
    running = [r for r in chosen.values() if r["status"] == "running"]
    if running and not args.force:
        raise UsageError(f"run {describe(running[0])} is running; stop it first or use --force")
    if not chosen:
        print("no runs match; nothing to delete")
        return 0
    for run_dir, record in sorted(chosen.items()):
        print(
            f"{'deleting' if args.yes else 'would delete'} {short_id(record)} {record.get('name')} "
            f"{record.get('status')} {run_dir}"
        )
        if args.yes and Path(run_dir).exists():
            shutil.rmtree(run_dir)
    if not args.yes:
        print(f"{len(chosen)} run(s) not deleted: add --yes to delete them")
    return 0


# ------------------------------------------------------------------------------------------- parser


def limit_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; give an integer >= 0 (0 lists all)")
    return value


SUBCOMMANDS = ("list", "show", "diff", "rerun", "tag", "note", "rm")


def runs_parser(prog: str = "rnnlab runs") -> OneLineParser:
    parser = OneLineParser(prog=prog, description="Find, compare and rerun runs from their records (run.json).")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")

    listing = commands.add_parser("list", help="the latest runs (the default command)")
    add_roots(listing)
    add_selection(listing)
    listing.add_argument("--limit", type=limit_value, default=20, help="newest N after filtering (0 = all; default 20)")
    listing.add_argument("--sort", default="-started", help="KEY or -KEY (descending); default -started")
    listing.add_argument("--json", action="store_true", help="full records as JSON")
    listing.add_argument("--csv", action="store_true", help="one row per run, every param and metric")
    listing.set_defaults(handler=cmd_list)

    show = commands.add_parser("show", help="everything in one run's record")
    show.add_argument("run", metavar="RUN", help="run directory or id prefix (>= 4 hex)")
    show.add_argument("--json", action="store_true", help="the record as JSON")
    add_roots(show)
    show.set_defaults(handler=cmd_show)

    diff = commands.add_parser("diff", help="two runs side by side: differing params, metrics, commits")
    diff.add_argument("first", metavar="RUN")
    diff.add_argument("second", metavar="RUN")
    add_roots(diff)
    diff.set_defaults(handler=cmd_diff)

    rerun = commands.add_parser("rerun", help="the command that recreates a run")
    rerun.add_argument("run", metavar="RUN")
    rerun.add_argument("--exec", action="store_true", help="also run it (from the directory it was run in)")
    add_roots(rerun)
    rerun.set_defaults(handler=cmd_rerun)

    tag = commands.add_parser("tag", help="add (or --remove) a tag")
    tag.add_argument("run", metavar="RUN")
    tag.add_argument("text", metavar="TEXT")
    tag.add_argument("--remove", action="store_true")
    add_roots(tag)
    tag.set_defaults(handler=cmd_tag)

    note = commands.add_parser("note", help="set a run's note ('' clears it)")
    note.add_argument("run", metavar="RUN")
    note.add_argument("text", metavar="TEXT")
    add_roots(note)
    note.set_defaults(handler=cmd_note)

    rm = commands.add_parser("rm", help="delete runs (prints what it would delete; --yes deletes)")
    rm.add_argument("runs", metavar="RUN", nargs="*")
    add_selection(rm)
    rm.add_argument("--yes", action="store_true", help="really delete")
    rm.add_argument("--force", action="store_true", help="also delete running runs")
    add_roots(rm)
    rm.set_defaults(handler=cmd_rm)
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
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "list")
    argv = attach_sort_values(argv)
    try:
        args = runs_parser(prog).parse_args(argv)
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


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"runs": runs_main}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``rnnlab`` console script: ``rnnlab COMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(
            f"usage: rnnlab {{{','.join(COMMANDS)}}} ...\n\n  runs   find, compare and rerun runs (rnnlab runs --help)"
        )
        return 0
    command = COMMANDS.get(argv[0]) if argv else None
    if command is None:
        given = f"command {argv[0]!r} is not allowed" if argv else "a command is needed"
        print(f"error: {given}; allowed: {', '.join(COMMANDS)} (rnnlab --help)", file=sys.stderr)
        return USAGE_EXIT
    return command(argv[1:])
