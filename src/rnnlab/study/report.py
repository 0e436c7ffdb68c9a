"""The study's report: ``report.md``, ``report.json`` (the numbers), ``report.png`` and the TensorBoard run
``report/`` in the study directory.

Read, never re-run: the tuning from each cell's Optuna study (storage) and ``best.yaml``; the test metric
and time of every confirm run from its record (``run.json``); its parameter count, validation curve and
gradient diagnostics from its run directory (``rnnlab.report.read``).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.report.read import read_run
from rnnlab.report.render import format_number, log_to_tensorboard, relative_path
from rnnlab.report.stats import Group, mean_std
from rnnlab.report.units import MetricFormat
from rnnlab.runs.store import read_record
from rnnlab.study.plan import Plan
from rnnlab.study.run import Confirm, Tuned
from rnnlab.study.stats import LEVEL, Difference, Summary, summarize, t_factor, verdict, welch

MIN_TRIALS_FOR_IMPORTANCE = 2


@dataclass
class CellResult:
    cell: str
    tuned: Tuned
    counts: dict[str, int]  # trials by state name
    trials: list[Any]  # optuna FrozenTrials, by number
    importances: dict[str, float]
    importance_note: str | None
    records: list[dict[str, Any]]  # the confirm runs' records, by seed
    group: Group  # the confirm runs as the comparison report reads them
    values: list[float]  # the test metric per seed (from the records)
    summary: Summary

    @property
    def params_count(self) -> str:
        return self.group.params()

    @property
    def seconds(self) -> float:
        return mean_std([r.get("duration_s") for r in self.records])[0]


def _importances(study, complete: int) -> tuple[dict[str, float], str | None]:
    """Optuna's parameter importances (its default evaluator); none, with the reason, for too few trials."""
    import optuna

    if complete < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, f"{complete} complete trial(s); importances need ≥ {MIN_TRIALS_FOR_IMPORTANCE}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError) as error:
            return {}, f"not computed: {error}"
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return {k: float(v) for k, v in values.items()}, (notes[0] if notes else None)


def collect(plan: Plan, tuned: dict[str, Tuned], jobs: list[Confirm]) -> list[CellResult]:
    import optuna

    from rnnlab.sweep.storage import open_storage

    storage = open_storage(plan.storage)
    results = []
    try:
        for cell in plan.cells:
            study = optuna.load_study(study_name=plan.study_name(cell), storage=storage)
            trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
            counts: dict[str, int] = {}
            for trial in trials:
                counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
            importances, note = _importances(study, counts.get("COMPLETE", 0))
            cell_jobs = sorted((j for j in jobs if j.cell == cell), key=lambda j: j.seed)
            records = [read_record(j.dir) for j in cell_jobs]
            group = Group(plan.task, cell, [read_run(j.dir) for j in cell_jobs])
            stored = [(r.get("metrics") or {}).get(group.test_metric) for r in records]
            values = [math.nan if v is None else float(v) for v in stored]
            results.append(
                CellResult(
                    cell,
                    tuned[cell],
                    counts,
                    trials,
                    importances,
                    note,
                    records,
                    group,
                    values,
                    summarize(values, MetricFormat(group.test_metric).bounds),
                )
            )
    finally:
        storage.remove_session()
    return results


def differences(results: list[CellResult]) -> list[Difference]:
    """Every pair of cells, later against earlier in ``study.cells`` order."""
    return [welch(a.cell, a.values, b.cell, b.values) for i, a in enumerate(results) for b in results[i + 1 :]]


# ---------------------------------------------------------------------------------------- formatting


def _param_text(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
        for k, v in params.items()
    )


def markdown(plan: Plan, results: list[CellResult], diffs: list[Difference]) -> str:
    """report.md: the method and the cells' results, pairwise differences, importances, the confirm runs."""
    fmt = MetricFormat(results[0].group.test_metric)
    lines = _results_table(plan, results, fmt)
    lines += ["", f"## Pairwise differences ({fmt.metric}, Welch's t-test)", ""]
    higher = plan.mode == "max"
    lines += [f"- {verdict(d, higher_is_better=higher, scale=fmt.scale, unit=fmt.unit)}" for d in diffs] or [
        "- one cell: nothing to compare"
    ]
    lines += _importances_table(plan, results)
    lines += ["", "![report](report.png)", ""]
    lines += _confirm_runs_table(plan, results, fmt)
    return "\n".join(lines) + "\n"


def _results_table(plan: Plan, results: list[CellResult], fmt: MetricFormat) -> list[str]:
    """The title, the method in one paragraph, and one row per cell (with the notes on its intervals)."""
    metric, level = fmt.metric, f"{LEVEL:.0%}"
    lines = [
        f"# Study {plan.name}: {', '.join(plan.cells)} on {plan.task}",
        "",
        f"Tune: per cell an Optuna study of {plan.trials} trials (≤ {plan.trial_epochs} epochs each, median pruning) "
        f"on {plan.metric} ({plan.mode}). Confirm: each cell's best retrained for {plan.epochs} epochs with seeds "
        f"0–{plan.seeds - 1} and tested on the test split ({metric}; the only use of the test split). "
        f"Test: mean ± one sample std over seeds (ddof=1; ± means that everywhere in this report); {level} CI of "
        f"the mean from the t distribution (n−1 degrees of freedom), written [low, high]; pairwise: Welch's "
        f"t-test. Time: mean run time per confirm run (run.json's duration_s, as the console's 'run time').",
        "",
        f"| cell | tuned | trials complete/pruned/failed | best {plan.metric} (trial) | {metric} mean ± std | "
        f"{level} CI | seeds | params | time per run (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.summary
        ci = fmt.interval(s.low, s.high, s.clipped) if s.n > 1 else "–"
        counts = f"{r.counts.get('COMPLETE', 0)}/{r.counts.get('PRUNED', 0)}/{r.counts.get('FAIL', 0)}"
        lines.append(
            f"| {r.cell} | {_param_text(r.tuned.params)} | {counts} | {fmt.value(r.tuned.value)} ({r.tuned.trial}) | "
            f"{fmt.mean_std(s.mean, s.std, s.n)} | {ci} | {s.n} | {r.params_count} | "
            f"{format_number(r.seconds, '.1f')} |"
        )
    return lines + interval_notes(fmt, [r.summary for r in results])


def _importances_table(plan: Plan, results: list[CellResult]) -> list[str]:
    names = sorted({name for r in results for name in r.importances} | set(plan.search_space(plan.cells[0])))
    lines = [
        "",
        "## Parameter importances (Optuna's default evaluator, complete trials)",
        "",
        "| cell | " + " | ".join(names) + " | note |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for r in results:
        cells = [format_number(r.importances.get(n), ".2f") for n in names]
        lines.append(f"| {r.cell} | " + " | ".join(cells) + f" | {r.importance_note or ''} |")
    return lines


def _confirm_runs_table(plan: Plan, results: list[CellResult], fmt: MetricFormat) -> list[str]:
    lines = [
        "## Confirm runs",
        "",
        f"| cell | seed | {fmt.metric} | {results[0].group.best_metric} | epochs | time (s) | status | run dir |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for record, run, value in zip(r.records, r.group.runs, r.values):
            best = (record.get("metrics") or {}).get(r.group.best_metric)
            lines.append(
                f"| {r.cell} | {run.config.get('seed', '?')} | {fmt.value(value)} | {fmt.value(best)} | "
                f"{len(run.val_curve)} | {format_number(record.get('duration_s'), '.1f')} | {record.get('status')} | "
                f"{relative_path(run.run_dir, plan.dir)} |"
            )
    return lines


def interval_notes(fmt: MetricFormat, summaries: list[Summary]) -> list[str]:
    """What a reader must know to read the intervals: which were clipped, and why few seeds make them wide."""
    notes = []
    if any(s.clipped for s in summaries):
        low, high = (fmt.value(b) if abs(b) != math.inf else "∞" for b in fmt.bounds)
        notes.append(f"\\* clipped to what {fmt.metric} can be ([{low}, {high}]): the t interval reached past it.")
    few = sorted({s.n for s in summaries if 1 < s.n < 5})
    if few:
        factors = ", ".join(f"{t_factor(n):.2f} for {n} seeds" for n in few)
        notes.append(
            f"Few seeds make wide intervals: the half-width is t × std / √n with t = {factors} (1.96 for very "
            "many); study.seeds=5 or more narrows them."
        )
    return ["", *notes] if notes else []


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def numbers(plan: Plan, results: list[CellResult], diffs: list[Difference]) -> dict[str, Any]:
    """The report's numbers as JSON (nan -> null): what scripts and the tests read."""
    return {
        "study": plan.name,
        "task": plan.task,
        "metric": results[0].group.test_metric,
        "optimized_metric": plan.metric,
        "level": LEVEL,
        "cells": {
            r.cell: {
                "params": r.tuned.params,
                "best_value": r.tuned.value,
                "best_trial": r.tuned.trial,
                "trials": r.counts,
                "importances": r.importances,
                "seeds": [run.config.get("seed") for run in r.group.runs],
                "values": [_finite(v) for v in r.values],
                "run_dirs": [str(run.run_dir) for run in r.group.runs],
                "mean": _finite(r.summary.mean),
                "std": _finite(r.summary.std),
                "n": r.summary.n,
                "ci": [_finite(r.summary.low), _finite(r.summary.high)],
                "ci_clipped": r.summary.clipped,
                "seconds_per_run": _finite(r.seconds),
            }
            for r in results
        },
        "pairs": [
            {
                "a": d.a,
                "b": d.b,
                "diff": _finite(d.diff),
                "ci": [_finite(d.low), _finite(d.high)],
                "p": _finite(d.p),
                "significant": d.significant,
                "reason": d.reason,
            }
            for d in diffs
        ],
    }


# ---------------------------------------------------------------------------------------- the figure


def _xy_params(names: list[str]) -> tuple[str | None, str | None]:
    x = "model.hidden_size" if "model.hidden_size" in names else (names[0] if names else None)
    rest = [n for n in names if n != x]
    y = "model.optimizer.lr" if "model.optimizer.lr" in rest else (rest[0] if rest else None)
    return x, y


def readable_log_axis(axis) -> None:
    """A log scale whose labels never overlap: labels at 1, 2 and 5 per decade in plain numbers, none on the
    minor ticks (matplotlib labels those when a range spans less than a decade, and they collide)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    axis.axes.set_xscale("log") if axis is axis.axes.xaxis else axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def figure(plan: Plan, results: list[CellResult]):
    """Per cell: optimisation history, the two main parameters coloured by value, importances; then the test
    metric with its CIs, the confirm runs' validation curves, and the gradient reaching each step."""
    from matplotlib.figure import Figure

    rows = len(results) + 1
    fig = Figure(figsize=(15, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    for row, r in enumerate(results):
        history, scatter, bars = axes[row]
        _plot_history(history, plan, r, f"C{row}")
        _plot_trials_by_params(fig, scatter, plan, r)
        _plot_importances(bars, r, f"C{row}")
    tests, curves, grads = axes[-1]
    _plot_confirm_runs(tests, curves, grads, results)
    return fig


def _plot_history(history, plan: Plan, r: CellResult, color: str) -> None:
    """The sweep's values by trial, the best so far, and each pruned trial's last value."""
    import numpy as np

    complete = [t for t in r.trials if t.state.name == "COMPLETE"]
    pruned = [t for t in r.trials if t.state.name == "PRUNED"]
    if complete:
        numbers_, values = [t.number for t in complete], [t.value for t in complete]
        best = np.maximum.accumulate(values) if plan.mode == "max" else np.minimum.accumulate(values)
        history.scatter(numbers_, values, color=color, s=16, label="complete")
        history.step(numbers_, best, where="post", color="black", linewidth=1, label="best so far")
    for t in pruned:
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        if last is not None:
            history.scatter([t.number], [last], color="grey", marker="x", s=16)
    history.set_title(f"{r.cell}: optimisation history (x: pruned, last value)", fontsize=9)
    history.set_xlabel("trial")
    history.set_ylabel(plan.metric)
    history.legend(fontsize=7, loc="best")


def _plot_trials_by_params(fig, scatter, plan: Plan, r: CellResult) -> None:
    """The trials by their two main parameters (or one, against the value), coloured by value; the best ringed."""
    names = sorted({name for t in r.trials for name in t.params})
    x, y = _xy_params(names)
    if x is not None:
        complete = [t for t in r.trials if t.state.name == "COMPLETE"]
        done = [t for t in complete if x in t.params and (y is None or y in t.params)]
        xs = [t.params[x] for t in done]
        ys = [t.params[y] if y else t.value for t in done]
        points = scatter.scatter(xs, ys, c=[t.value for t in done], cmap="viridis", s=22)
        others = [t for t in r.trials if t.state.name != "COMPLETE" and x in t.params and (y is None or y in t.params)]
        if others:
            scatter.scatter(
                [t.params[x] for t in others],
                [t.params[y] if y else 0 for t in others],
                color="grey",
                marker="x",
                s=14,
                label="pruned/failed",
            )
            scatter.legend(fontsize=7, loc="best")
        if done:
            fig.colorbar(points, ax=scatter, label=plan.metric)
        best = r.tuned.params
        if x in best and (y is None or y in best):
            scatter.scatter([best[x]], [best[y] if y else r.tuned.value], facecolor="none", edgecolor="red", s=90)
        for name, axis in ((x, "x"), (y, "y")):
            dist = next((t.distributions.get(name) for t in r.trials if name and name in t.distributions), None)
            if getattr(dist, "log", False):
                readable_log_axis(scatter.xaxis if axis == "x" else scatter.yaxis)
        scatter.set_xlabel(x)
        scatter.set_ylabel(y or plan.metric)
    scatter.set_title(f"{r.cell}: trials by parameters (red ring: best)", fontsize=9)


def _plot_importances(bars, r: CellResult, color: str) -> None:
    if r.importances:
        keys = list(r.importances)
        bars.barh(range(len(keys)), [r.importances[k] for k in keys], color=color)
        bars.set_yticks(range(len(keys)), keys, fontsize=8)
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
    else:
        bars.text(0.5, 0.5, r.importance_note or "no importances", ha="center", va="center", fontsize=8, wrap=True)
        bars.set_axis_off()
    bars.set_title(f"{r.cell}: parameter importances", fontsize=9)


def _plot_confirm_runs(tests, curves, grads, results: list[CellResult]) -> None:
    """The test metric with its CIs, the confirm runs' validation curves, the gradient reaching each step."""
    fmt = MetricFormat(results[0].group.test_metric)
    for i, r in enumerate(results):
        s = r.summary
        color = f"C{i}"
        mean, low, high = fmt.plotted(s.mean), fmt.plotted(s.low), fmt.plotted(s.high)
        if s.n > 1:
            tests.errorbar([i], [mean], yerr=[[mean - low], [high - mean]], fmt="o", color=color, capsize=8)
        tests.scatter([i] * len(r.values), [fmt.plotted(v) for v in r.values], color="black", s=10, zorder=3)
        epochs, curve, spread = r.group.val_band()
        if len(epochs):
            curves.plot(epochs, curve, color=color, label=f"{r.cell} (n={len(r.group.runs)})")
            curves.fill_between(epochs, curve - spread, curve + spread, color=color, alpha=0.2, linewidth=0)
        profile = r.group.grad_profile("last")
        if profile is not None:
            grads.plot(range(1, len(profile) + 1), profile, color=color, label=r.cell)
    tests.set_xticks(range(len(results)), [r.cell for r in results])
    tests.set_ylabel(fmt.axis_label())
    tests.set_title(f"test: mean and {LEVEL:.0%} CI over seeds (dots: seeds)", fontsize=9)
    curves.set_xlabel("epoch")
    curves.set_ylabel(f"val/{results[0].group.runs[0].base_metric}")
    curves.set_title("confirm runs: validation (mean ± std)", fontsize=9)
    curves.legend(fontsize=7, loc="best")
    if grads.lines:
        grads.set_yscale("log")
        grads.legend(fontsize=7, loc="best")
    else:
        grads.text(0.5, 0.5, "no gradient diagnostics", ha="center", va="center", fontsize=8)
    grads.set_xlabel("time step t")
    grads.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_T‖")
    grads.set_title("loss gradient reaching each step (last epoch)", fontsize=9)


def write_study_report(plan: Plan, tuned: dict[str, Tuned], jobs: list[Confirm], tensorboard: bool = True) -> Path:
    """Write report.md, report.json, report.png (and the TensorBoard run ``report/``); the path of report.md."""
    results = collect(plan, tuned, jobs)
    diffs = differences(results)
    text = markdown(plan, results, diffs)
    (plan.dir / "report.md").write_text(text)
    (plan.dir / "report.json").write_text(json.dumps(numbers(plan, results, diffs), indent=1) + "\n")
    fig = figure(plan, results)
    fig.savefig(plan.dir / "report.png", dpi=100)
    if tensorboard:
        log_to_tensorboard(plan.dir, text, fig)
    return plan.dir / "report.md"
