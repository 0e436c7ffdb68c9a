"""Part 1 of the GPU check: the suite's GPU tests (``pytest -m cuda``), read from pytest's JUnit report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gpu_check_runner import Context, Outcome, run_command, tail_block

TITLE = "1. GPU tests (`pytest -m cuda`)"


def junit_rows(xml_text: str) -> list[dict]:
    """One dict per test case of a pytest JUnit XML report: ``test``, ``outcome`` (passed | failed | error |
    skipped), ``seconds``, ``note`` (the skip reason or failure message, and any ``record_property`` values)."""
    rows = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, note = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                note = (element.get("message") or element.text or "").strip().splitlines()[0:1]
                note = note[0] if note else ""
                break
        properties = [f"{p.get('name')}: {p.get('value')}" for p in case.iter("property")]
        module = case.get("classname", "").rsplit(".", 1)[-1]
        rows.append(
            {
                "test": f"{module}::{case.get('name')}" if module else case.get("name"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0.0),
                "note": "; ".join([note, *properties] if note else properties),
            }
        )
    return rows


def tests_outcome(returncode: int, rows: list[dict], output: str) -> Outcome:
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error", "skipped")}
    shown = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    table = ["| test | result | s | note |", "|---|---|---|---|"]
    table += [f"| `{r['test']}` | {r['outcome']} | {r['seconds']:.1f} | {r['note'].replace('|', '/')} |" for r in rows]
    body = "\n".join(table)
    if not rows:
        return Outcome("failed", f"no test marked cuda ran (pytest exit code {returncode})", tail_block(output))
    if counts["failed"] or counts["error"] or returncode not in (0,):
        return Outcome("failed", shown or f"pytest exit code {returncode}", body + "\n\n" + tail_block(output))
    return Outcome("passed", shown, body)


def part_tests(ctx: Context, deadline: float) -> Outcome:
    report = ctx.work / "cuda-tests.xml"
    command = [
        ctx.python,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-v",
        "-p",
        "no:cacheprovider",
        "--timeout=150",
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit1",  # keeps record_property values in the report
    ]
    result = run_command(command, deadline, ctx.env)
    rows = junit_rows(report.read_text()) if report.exists() else []
    return tests_outcome(result.returncode, rows, result.stdout + result.stderr)
