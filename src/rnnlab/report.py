"""The comparison report of a log directory: ``python -m rnnlab.report <logdir> [--out DIR]``.

Reads what the runs under ``<logdir>`` wrote — never re-runs anything: every run directory (a
``config.yaml`` beside TensorBoard event files, at any depth: ``logs/``, a sweep's ``multirun/...`` dir)
is read with TensorBoard's event reader. Runs are grouped by task, cell, implementation and hidden size
(the seeds of one setting form a group). Written to ``--out`` (default ``<logdir>``):

- ``report.md``: per group the parameter count, the best validation value (``optimized_metric``), the
  test metric as mean ± sample std (ddof=1) over seeds, validated epochs, wall time (first to last event
  of the run) and, when the run recorded gradient diagnostics, ‖∂L/∂h_1‖/‖∂L/∂h_T‖ at its last epoch
  (geometric mean over seeds); then one row per run;
- ``report.png``: validation curves per group (mean, ±std band), test bars with std error bars and each
  seed's value, and the loss gradient reaching each time step (``grad_by_step.json`` of the runs);
- the same text and image into TensorBoard, as run ``report`` under ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

RUN_CONFIG = "config.yaml"
PARAMS_TAG = "model/num_parameters"
CELL_ORDER = {"vanilla": 0, "gru": 1, "lstm": 2}
REPORT_RUN = "report"  # the report's own TensorBoard run directory under --out
FLOOR = 1e-30  # gradient norms that underflowed to 0 still go on a log scale


class NoRunsError(RuntimeError):
    """The log directory holds no run directories."""


@dataclass
class Run:
    run_dir: Path
    config: dict[str, Any]
    scalars: dict[str, list[tuple[int, float]]]
    wall_time: float | None
    grad_by_step: dict[int, list[float]] = field(default_factory=dict)

    @property
    def model(self) -> dict[str, Any]:
        return self.config["model"]

    @property
    def task(self) -> str:
        return str(self.config.get("task_name", "?"))

    @property
    def group(self) -> str:
        return f"{self.model['cell']}-{self.model['impl']}-h{self.model['hidden_size']}"

    @property
    def best_metric(self) -> str:
        return self.config.get("optimized_metric", "val/acc_best")

    @property
    def base_metric(self) -> str:
        """``acc`` for val/acc_best, ``mse`` for val/mse_best: the name the val/test curves share."""
        name = self.best_metric.split("/", 1)[-1]
        return name[: -len("_best")] if name.endswith("_best") else name

    def last(self, tag: str) -> float:
        points = self.scalars.get(tag)
        return points[-1][1] if points else math.nan

    @property
    def val_curve(self) -> list[float]:
        return [value for _, value in self.scalars.get(f"val/{self.base_metric}", [])]

    @property
    def params(self) -> int | None:
        value = self.last(PARAMS_TAG)
        return None if math.isnan(value) else int(round(value))

    @property
    def grad_ratio(self) -> float:
        """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at the last epoch with gradient diagnostics (nan without)."""
        if not self.grad_by_step:
            return math.nan
        norms = self.grad_by_step[max(self.grad_by_step)]
        return max(norms[0], FLOOR) / norms[-1] if norms[-1] > 0 else math.nan


def find_run_dirs(logdir: Path) -> list[Path]:
    """Directories holding a run's ``config.yaml`` and TensorBoard events, at any depth, sorted."""
    return sorted(
        config.parent for config in Path(logdir).rglob(RUN_CONFIG) if any(config.parent.glob("events.out.tfevents.*"))
    )


def read_run(run_dir: Path) -> Run:
    """One run's config, every scalar (step, value), wall time and gradient diagnostics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rnnlab.diagnostics import read_grad_by_step

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
    accumulator.Reload()
    scalars, last_wall = {}, None
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        scalars[tag] = [(e.step, e.value) for e in events]
        if events:
            last_wall = max(last_wall or 0.0, max(e.wall_time for e in events))
    try:
        wall_time = last_wall - accumulator.FirstEventTimestamp() if last_wall is not None else None
    except ValueError:  # no events at all
        wall_time = None
    config = OmegaConf.to_container(OmegaConf.load(run_dir / RUN_CONFIG), resolve=False)
    return Run(run_dir, config, scalars, wall_time, read_grad_by_step(run_dir))


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) of the finite values, and their count."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(finite) == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0, len(finite)


def geometric_mean(values: list[float]) -> float:
    positive = [v for v in values if math.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(positive)))) if positive else math.nan


@dataclass
class Group:
    task: str
    name: str
    runs: list[Run]

    @property
    def key(self):
        cell, impl, hidden = self.runs[0].model["cell"], self.runs[0].model["impl"], self.runs[0].model["hidden_size"]
        return self.task, CELL_ORDER.get(cell, 99), cell, impl, hidden

    @property
    def label(self) -> str:
        return self.name

    @property
    def test_metric(self) -> str:
        return f"test/{self.runs[0].base_metric}"

    @property
    def best_metric(self) -> str:
        return self.runs[0].best_metric

    def test(self) -> tuple[float, float, int]:
        return mean_std([r.last(self.test_metric) for r in self.runs])

    def best(self) -> tuple[float, float, int]:
        return mean_std([r.last(self.best_metric) for r in self.runs])

    def params(self) -> str:
        return _span([r.params for r in self.runs if r.params is not None], ",")

    def epochs(self) -> str:
        return _span([len(r.val_curve) for r in self.runs], "d")

    def wall_time(self) -> float:
        return mean_std([r.wall_time for r in self.runs])[0]

    def grad_ratio(self) -> float:
        return geometric_mean([r.grad_ratio for r in self.runs])

    def val_band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Epochs (1-based), mean and std of the validation curve over the runs that reached each epoch."""
        curves = [r.val_curve for r in self.runs if r.val_curve]
        length = max((len(c) for c in curves), default=0)
        means, stds = [], []
        for epoch in range(length):
            mean, std, _ = mean_std([c[epoch] for c in curves if len(c) > epoch])
            means.append(mean)
            stds.append(std)
        return np.arange(1, length + 1), np.array(means), np.array(stds)

    def grad_profile(self, which: str = "last") -> np.ndarray | None:
        """‖∂L/∂h_t‖/‖∂L/∂h_T‖ at each run's first or last diagnosed epoch, geometric mean over runs."""
        profiles = []
        for run in self.runs:
            if run.grad_by_step:
                norms = np.array(run.grad_by_step[(max if which == "last" else min)(run.grad_by_step)])
                if norms[-1] > 0:
                    profiles.append(np.maximum(norms, FLOOR) / norms[-1])
        if not profiles or len({len(p) for p in profiles}) != 1:
            return None
        return np.exp(np.log(np.stack(profiles)).mean(axis=0))


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.task, run.group), []).append(run)
    return sorted(
        (
            Group(task, name, sorted(members, key=lambda r: (r.config.get("seed", 0), str(r.run_dir))))
            for (task, name), members in groups.items()
        ),
        key=lambda g: g.key,
    )


# ------------------------------------------------------------------------------------------- output


def _pm(mean: float, std: float, n: int, digits: int = 4) -> str:
    if n == 0:
        return "–"
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _span(values: list[int], fmt: str) -> str:
    """One value, or the range of differing values ("?" for none)."""
    if not values:
        return "?"
    low, high = min(values), max(values)
    return format(low, fmt) if low == high else f"{low:{fmt}}–{high:{fmt}}"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def markdown(logdir: Path, groups: list[Group]) -> str:
    runs = [r for g in groups for r in g.runs]
    tasks = sorted({g.task for g in groups})
    lines = [
        f"# Cell comparison: {logdir}",
        "",
        f"{len(runs)} runs in {len(groups)} groups (task: {', '.join(tasks)}). Test and best validation values: "
        "mean ± sample std over seeds (ddof=1); wall time: mean per run, first to last TensorBoard event; "
        "epochs: validated epochs; grad h1/hT: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at the last diagnosed epoch "
        "(geometric mean over seeds; small = vanishing gradient).",
        "",
        "| task | group | seeds | params | best val | test | epochs | wall time (s) | grad h1/hT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        seeds = ",".join(str(r.config.get("seed", "?")) for r in g.runs)
        lines.append(
            f"| {g.task} | {g.label} | {seeds} | {g.params()} | {g.best_metric} {_pm(*g.best())} | "
            f"{g.test_metric} {_pm(*g.test())} | {g.epochs()} | {_num(g.wall_time(), '.1f')} | "
            f"{_num(g.grad_ratio(), '.3g')} |"
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
        for r in g.runs:
            lines.append(
                f"| {g.label} | {r.config.get('seed', '?')} | {_num(r.last(g.best_metric), '.4f')} | "
                f"{_num(r.last(g.test_metric), '.4f')} | {len(r.val_curve)} | {_num(r.wall_time, '.1f')} | "
                f"{_relative(r.run_dir, logdir)} |"
            )
    return "\n".join(lines) + "\n"


def _relative(path: Path, base: Path) -> str:
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
    curves, bars = fig.add_subplot(1, panels, 1), fig.add_subplot(1, panels, 2)
    colors = {g.label + g.task: f"C{i}" for i, g in enumerate(groups)}
    multi_task = len({g.task for g in groups}) > 1

    def name(g: Group) -> str:
        return f"{g.task}: {g.label}" if multi_task else g.label

    for g in groups:
        epochs, mean, std = g.val_band()
        if len(epochs):
            color = colors[g.label + g.task]
            curves.plot(
                epochs,
                mean,
                color=color,
                marker="." if len(epochs) < 30 else None,
                label=f"{name(g)} (n={len(g.runs)})",
            )
            curves.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    metric = groups[0].runs[0].base_metric
    curves.set_xlabel("epoch")
    curves.set_ylabel(f"val/{metric}")
    curves.set_title("validation (mean ± std over seeds)")
    curves.legend(loc="best", fontsize=8)

    for i, g in enumerate(groups):
        mean, std, n = g.test()
        color = colors[g.label + g.task]
        bars.bar(i, 0 if math.isnan(mean) else mean, yerr=std if n > 1 else None, color=color, alpha=0.7, capsize=6)
        values = [r.last(g.test_metric) for r in g.runs]
        bars.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    bars.set_xticks(range(len(groups)), [name(g) for g in groups], rotation=20, ha="right", fontsize=8)
    bars.set_ylabel(groups[0].test_metric)
    bars.set_title("test (bars: mean ± std; dots: seeds)")

    if with_grads:
        grads = fig.add_subplot(1, panels, 3)
        for g in with_grads:
            color = colors[g.label + g.task]
            last = g.grad_profile("last")
            grads.plot(range(1, len(last) + 1), last, color=color, label=f"{name(g)}, last epoch")
            first = g.grad_profile("first")
            if first is not None and not np.array_equal(first, last):
                grads.plot(
                    range(1, len(first) + 1),
                    first,
                    color=color,
                    linestyle=":",
                    linewidth=1,
                    label=f"{name(g)}, first epoch",
                )
        grads.set_yscale("log")
        grads.set_xlabel("time step t")
        grads.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_T‖")
        grads.set_title("loss gradient reaching each hidden state")
        grads.legend(loc="best", fontsize=7)
    return fig


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


def write_report(logdir: str | Path, out: str | Path | None = None, tensorboard: bool = True) -> list[Group]:
    """Read every run under ``logdir``; write report.md and report.png (and the TensorBoard run) to ``out``."""
    logdir = Path(logdir)
    out = Path(out) if out is not None else logdir
    run_dirs = find_run_dirs(logdir)
    if not run_dirs:
        raise NoRunsError(
            f"no runs found under {logdir} (a run directory holds config.yaml and events.out.tfevents.* files)"
        )
    groups = group_runs([read_run(d) for d in run_dirs])
    text = markdown(logdir, groups)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    fig = figure(groups)
    fig.savefig(out / "report.png", dpi=110)
    if tensorboard:
        log_to_tensorboard(out, text, fig)
    return groups


class CompareReport(Callback):
    """Hydra callback: when a multirun ends, write the report of its sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_report(sweep_dir)
        except NoRunsError as error:
            print(f"[rnnlab] report: {error}")
            return
        print(f"[rnnlab] report: {sweep_dir / 'report.md'} {sweep_dir / 'report.png'}")
        print((sweep_dir / "report.md").read_text().split("\n![report]")[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnlab.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", help="a log directory the app wrote: logs/, logs/<task>, a multirun sweep dir, ...")
    parser.add_argument(
        "--out", help="where report.md, report.png and the report's TensorBoard run go (default: logdir)"
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="do not write the report into TensorBoard")
    args = parser.parse_args(argv)
    if not Path(args.logdir).is_dir():
        print(f"error: {args.logdir} is not a directory", file=sys.stderr)
        return 1
    try:
        write_report(args.logdir, args.out, tensorboard=not args.no_tensorboard)
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = Path(args.out or args.logdir)
    print((out / "report.md").read_text().split("\n![report]")[0])
    print(f"[rnnlab] report: {out / 'report.md'} {out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
