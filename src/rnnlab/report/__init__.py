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

Modules: ``read`` (runs from disk), ``stats`` (groups, means, spreads), ``render`` (markdown, figure,
TensorBoard). May import every other rnnlab package; nothing imports it but the entry points and Hydra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnlab.console import say, show
from rnnlab.report.read import NoRunsError, find_tensorboard_runs, read_run
from rnnlab.report.render import figure, log_to_tensorboard, markdown
from rnnlab.report.stats import Group, group_runs


def write_report(logdir: str | Path, out: str | Path | None = None, tensorboard: bool = True) -> list[Group]:
    """Read every run under ``logdir``; write report.md and report.png (and the TensorBoard run) to ``out``."""
    logdir = Path(logdir)
    out = Path(out) if out is not None else logdir
    run_dirs = find_tensorboard_runs(logdir)
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
            say(f"report: {error}")
            return
        say(f"report: {sweep_dir / 'report.md'} {sweep_dir / 'report.png'}")
        show((sweep_dir / "report.md").read_text().split("\n![report]")[0])


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
    show((out / "report.md").read_text().split("\n![report]")[0])
    say(f"report: {out / 'report.md'} {out / 'report.png'}")
    return 0
