"""Part 4 of the GPU check: ``bench/run.py --only cells --device cuda`` at a few sizes, its numbers read from the
JSON the bench writes (``--json``)."""

from __future__ import annotations

import json
import statistics

from gpu_check_runner import BENCH, ROOT, Context, Outcome, run_command, tail_block

BENCH_CELLS, BENCH_HIDDEN, BENCH_BATCHES = 3, (32, 128, 512), (100, 1000)  # the bench times all 3 cells
BENCH_REPEATS = 15  # interleaved, after one warm-up repeat
TITLE = "4. Cells bench (`bench/run.py --only cells --device cuda`)"
# Where the cells are timed (a CPU smoke run of the plumbing can set it to "cpu"; the check itself never does).
DEVICE = "cuda"


def cells_rows(report: dict) -> list[dict]:
    """The rows of the cells tables in ``bench/run.py --json``'s report: cell, N, H, custom ms, builtin ms, ratio."""
    rows = []
    for table in report.get("tables", []):
        if table["benchmark"] != "cells":
            continue
        for cell, hidden, custom, builtin, ratio in (row[:5] for row in table["rows"]):
            rows.append(
                {
                    "cell": cell,
                    "N": table["settings"]["N"],
                    "H": hidden,
                    "custom": custom,
                    "builtin": builtin,
                    "ratio": ratio,
                }
            )
    return rows


def cells_verdict(rows: list[dict]) -> str:
    """How the custom cells compare with cuDNN, in numbers (never hidden: it heads the part's row)."""
    if not rows:
        return "no rows"
    ratios = [r["ratio"] for r in rows]
    worst = max(rows, key=lambda r: r["ratio"])
    best = min(rows, key=lambda r: r["ratio"])
    slower = sum(x > 1.0 for x in ratios)
    median = statistics.median(ratios)
    where = f"{worst['cell']} H={worst['H']} N={worst['N']}"
    if median > 2.0:
        grade = "far slower than cuDNN"
    elif slower:
        grade = "slower than cuDNN"
    else:
        grade = "not slower than cuDNN"
    return (
        f"custom cells {grade}: median {median:.1f}× cuDNN's time, from {best['ratio']:.2f}× to "
        f"{worst['ratio']:.1f}× ({where}); slower in {slower} of {len(rows)} settings"
    )


def part_cells(ctx: Context, deadline: float) -> Outcome:
    report = ctx.work / "cells-bench.json"
    command = [
        ctx.python,
        str(BENCH / "run.py"),
        "--only",
        "cells",
        "--device",
        DEVICE,
        "--hidden-sizes",
        ",".join(map(str, BENCH_HIDDEN)),
        "--batch-sizes",
        ",".join(map(str, BENCH_BATCHES)),
        "--repeats",
        str(BENCH_REPEATS),
        "--quick",  # 1 warm-up repeat
        "--json",
        str(report),
    ]
    result = run_command(command, deadline, ctx.env)
    rows = cells_rows(json.loads(report.read_text())) if report.exists() else []
    tables = result.stdout[result.stdout.find("### Cells") :] if "### Cells" in result.stdout else ""
    shown = "`" + " ".join(command[1:]).replace(str(ROOT) + "/", "").replace(str(ctx.work), "<tmp>") + "`"
    body = f"Command: {shown} (median of {BENCH_REPEATS} interleaved repeats after a warm-up; T=40, D=1, float32)\n\n"
    body += tables.replace("### ", "#### ").strip()
    expected = BENCH_CELLS * len(BENCH_HIDDEN) * len(BENCH_BATCHES)
    if result.returncode != 0 or len(rows) != expected:
        note = f"bench exit code {result.returncode}, {len(rows)} of {expected} rows"
        return Outcome("failed", note, body + "\n\n" + tail_block(result.stdout + result.stderr))
    return Outcome("passed", cells_verdict(rows), body)
