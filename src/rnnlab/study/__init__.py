"""The fair comparison of cells: each tuned with the same sweep budget, each one's best retrained over
seeds and tested, a report with confidence intervals and significance (``src/study.py``, ``make study``).

- ``plan``: the ``study`` block and the command line, checked before anything runs; the commands it runs;
- ``run``: one sweep per cell, the confirm runs, interruption and continuation;
- ``stats``: mean ± std, t confidence intervals, Welch's t-test and its verdict in words;
- ``report``: report.md, report.json, report.png and the report's TensorBoard run.

The top layer: may import every other rnnlab package; nothing imports it but the entry point. Light at
import (no torch): the Hydra callback checks a command before the study directory is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnlab.errors import ConfigError
from rnnlab.study.plan import Plan, make_plan

LOCK_FILE = ".study.lock"


def plan_of(config: DictConfig) -> Plan:
    """The plan of the study this (Hydra-composed) config runs."""
    from hydra.core.hydra_config import HydraConfig

    if "hydra" in config:  # in a callback, before Hydra sets it: so ${hydra:...} in hydra.run.dir resolves
        HydraConfig.instance().set_config(config)
    return make_plan(config, HydraConfig.get())


class StudyCallback(Callback):
    """Hydra callback: check the study and take its directory's lock before Hydra writes anything there.

    A second study on the same directory stops with one line while the first runs (the lock is released
    when this process ends, however it ends).
    """

    def __init__(self) -> None:
        self._lock_fd: int | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            plan = plan_of(config)
            plan.check_settings()
            if plan.match == "params":  # a ceiling too low for a cell is a mistake: found here, not later
                from rnnlab.study.run import matched_caps

                matched_caps(plan, config)
            self._lock(plan.dir)
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None

    def _lock(self, study_dir: Path) -> None:
        import fcntl

        path = study_dir / LOCK_FILE
        holder = path.read_text().strip() if path.is_file() else ""
        study_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{study_dir} is in use by another study (pid {holder or '?'}); allowed: wait for it, "
                "or another study.name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd  # held until the study ends (on_run_end), or this process does

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The study is over (however it ended): its directory is free, also for a next study in this process."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


def main(cfg: DictConfig) -> None:
    """What ``src/study.py`` runs once Hydra has composed ``conf/study.yaml``."""
    from rnnlab import console
    from rnnlab.study.report import write_study_report
    from rnnlab.study.run import exit_interrupted, run_study, say

    plan = plan_of(cfg)
    try:
        tuned, jobs = run_study(cfg, plan)
        report = write_study_report(plan, tuned, jobs)
        say(f"report: {report} {report.with_suffix('.png')}")
        console.show(report.read_text().split("\n![report]")[0])
    except KeyboardInterrupt as error:  # StudyInterrupted (children stopped), or Ctrl-C while the report is written
        exit_interrupted(plan.dir, error)


__all__ = ["Plan", "StudyCallback", "main", "make_plan", "plan_of"]
