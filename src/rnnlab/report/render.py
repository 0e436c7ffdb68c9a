"""Rendering a report: the markdown tables, the figure, and the report's own TensorBoard run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rnnlab.report.stats import Group
from rnnlab.report.units import MetricFormat

REPORT_RUN = "report"  # the report's own TensorBoard run directory under --out


def format_number(value: float | None, fmt: str) -> str:
    """``value`` in ``fmt``, or a dash for a missing or non-finite value."""
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def markdown(logdir: Path, groups: list[Group]) -> str:
    runs = [r for g in groups for r in g.runs]
    tasks = sorted({g.task for g in groups})
    lines = [
        f"# Cell comparison: {logdir}",
        "",
        f"{len(runs)} runs in {len(groups)} groups (task: {', '.join(tasks)}). Test and best validation values: "
        "mean ± one sample std over seeds (ddof=1), accuracies in percent; wall time: mean per run, first to last "
        "TensorBoard event; "
        "epochs: validated epochs; grad h1/hT: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at the last diagnosed epoch "
        "(geometric mean over seeds; small = vanishing gradient).",
        "",
        "| task | group | seeds | params | best val | test | epochs | wall time (s) | grad h1/hT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        seeds = ",".join(str(r.config.get("seed", "?")) for r in g.runs)
        best, test = MetricFormat(g.best_metric), MetricFormat(g.test_metric)
        lines.append(
            f"| {g.task} | {g.label} | {seeds} | {g.params()} | {g.best_metric} {best.mean_std(*g.best())} | "
            f"{g.test_metric} {test.mean_std(*g.test())} | {g.epochs()} | {format_number(g.wall_time(), '.1f')} | "
            f"{format_number(g.grad_ratio(), '.3g')} |"
        )
    lines += [
        "",
        "![report](report.png)",
        "",
        "## Runs",
        "",
        "| group | seed | best val | test | epochs | wall time (s) | run dir |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        best, test = MetricFormat(g.best_metric), MetricFormat(g.test_metric)
        for r in g.runs:
            lines.append(
                f"| {g.label} | {r.config.get('seed', '?')} | {best.value(r.last(g.best_metric))} | "
                f"{test.value(r.last(g.test_metric))} | {len(r.val_curve)} | "
                f"{format_number(r.wall_time, '.1f')} | "
                f"{relative_path(r.run_dir, logdir)} |"
            )
    return "\n".join(lines) + "\n"


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` where it lies below it, else as given."""
    try:
        return str(path.resolve().relative_to(base.resolve())) or "."
    except ValueError:
        return str(path)


def figure(groups: list[Group]):
    """Validation curves (mean ± std), test bars (std error bars, seeds as dots), gradient by step."""
    from matplotlib.figure import Figure

    with_grads = [g for g in groups if g.grad_profile() is not None]
    panels = 3 if with_grads else 2
    fig = Figure(figsize=(5.2 * panels, 4.2), layout="constrained")
    style = _Style(groups)
    _validation_panel(fig.add_subplot(1, panels, 1), groups, style)
    _test_panel(fig.add_subplot(1, panels, 2), groups, style)
    if with_grads:
        _gradient_panel(fig.add_subplot(1, panels, 3), with_grads, style)
    return fig


class _Style:
    """One colour per group across the panels; groups named with their task when several tasks are shown."""

    def __init__(self, groups: list[Group]) -> None:
        self.colors = {g.label + g.task: f"C{i}" for i, g in enumerate(groups)}
        self.multi_task = len({g.task for g in groups}) > 1

    def color(self, group: Group) -> str:
        return self.colors[group.label + group.task]

    def name(self, group: Group) -> str:
        return f"{group.task}: {group.label}" if self.multi_task else group.label


def _validation_panel(axes, groups: list[Group], style: _Style) -> None:
    fmt = MetricFormat(f"val/{groups[0].runs[0].base_metric}")
    for g in groups:
        epochs, mean, std = g.val_band()
        mean, std = fmt.plotted(mean), fmt.plotted(std)
        if len(epochs):
            marker = "." if len(epochs) < 30 else None
            axes.plot(epochs, mean, color=style.color(g), marker=marker, label=f"{style.name(g)} (n={len(g.runs)})")
            axes.fill_between(epochs, mean - std, mean + std, color=style.color(g), alpha=0.2, linewidth=0)
    axes.set_xlabel("epoch")
    axes.set_ylabel(fmt.axis_label())
    axes.set_title("validation (mean ± std over seeds)")
    axes.legend(loc="best", fontsize=8)


def _test_panel(axes, groups: list[Group], style: _Style) -> None:
    fmt = MetricFormat(groups[0].test_metric)
    for i, g in enumerate(groups):
        mean, std, n = g.test()
        value = 0 if math.isnan(mean) else fmt.plotted(mean)
        axes.bar(i, value, yerr=fmt.plotted(std) if n > 1 else None, color=style.color(g), alpha=0.7, capsize=6)
        values = [fmt.plotted(r.last(g.test_metric)) for r in g.runs]
        axes.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    axes.set_xticks(range(len(groups)), [style.name(g) for g in groups], rotation=20, ha="right", fontsize=8)
    axes.set_ylabel(fmt.axis_label())
    axes.set_title("test (bars: mean ± std; dots: seeds)")


def _gradient_panel(axes, groups: list[Group], style: _Style) -> None:
    for g in groups:
        last = g.grad_profile("last")
        if last is None:  # figure() passes only groups that have one
            continue
        axes.plot(range(1, len(last) + 1), last, color=style.color(g), label=f"{style.name(g)}, last epoch")
        first = g.grad_profile("first")
        if first is not None and not np.array_equal(first, last):
            axes.plot(
                range(1, len(first) + 1),
                first,
                color=style.color(g),
                linestyle=":",
                linewidth=1,
                label=f"{style.name(g)}, first epoch",
            )
    axes.set_yscale("log")
    axes.set_xlabel("time step t")
    axes.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_T‖")
    axes.set_title("loss gradient reaching each hidden state")
    axes.legend(loc="best", fontsize=7)


def log_to_tensorboard(out: Path, text: str, fig) -> Path:
    """The report as text and image in a TensorBoard run ``<out>/report`` (earlier report events replaced)."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = out / REPORT_RUN
    for old in run_dir.glob("events.out.tfevents.*"):
        old.unlink()
    writer = SummaryWriter(log_dir=str(run_dir))
    writer.add_text("report", text, global_step=0)
    writer.add_figure("report", fig, global_step=0, close=False)
    writer.close()
    return run_dir
