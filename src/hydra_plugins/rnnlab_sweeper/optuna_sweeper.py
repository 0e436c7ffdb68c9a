"""A Hydra sweeper on current Optuna: ask/tell on an RDB storage, pruning, failure tolerance, nothing lost.

Each trial is asked from the stored study, launched as a Hydra job with its sampled overrides (plus the app's
``trial_overrides``, e.g. rnnlab's ``++optuna_trial.number={number}`` so the job can report to it and be pruned),
and told COMPLETE, PRUNED (the job raised ``optuna.TrialPruned``) or FAIL (it raised, or returned NaN/inf).
Every mistake in the sweep's own settings is one ``error:`` line before any trial runs, with the study and its
files left as they were. This module sets a sweep up and reports on it; its parts: ``search_space`` (syntax ->
distributions), ``samplers`` (the sampler and pruner), ``study`` (defaults, what a study remembers, the folder it
owns), ``placement`` (trials at once, GPUs, cores), ``trial_overrides`` (what trials are told), ``trial_loop``
(running the trials), ``trial_states`` (heartbeats, lost trials, telling), ``progress`` (console lines).
Optuna is imported lazily: Hydra imports this module on every run, sweep or not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.rnnlab_sweeper import optuna_study, placement, samplers, search_space, trial_states
from hydra_plugins.rnnlab_sweeper.progress import Progress
from hydra_plugins.rnnlab_sweeper.samplers import SweepOptionError
from hydra_plugins.rnnlab_sweeper.search_space import SearchSpaceError, distribution_of  # noqa: F401 (public)
from hydra_plugins.rnnlab_sweeper.trial_loop import Outcome, Sweep, TrialLoop
from hydra_plugins.rnnlab_sweeper.trial_overrides import TrialOverrides
from rnnlab import budget
from rnnlab.console import SWEEP, say, show
from rnnlab.errors import CommandError

# Command-line groups that only configure the sweep (its budget): best.yaml's command (the full training) leaves
# them out, its trial_command keeps them.
SWEEP_ONLY_KEYS = ("hparams_search",)


class SweepFailedError(CommandError, RuntimeError):
    """Too many (or all) of a sweep's trials failed; the message names the first error (printed as one line)."""


class RnnlabOptunaSweeper(Sweeper):
    # Set by setup(), which Hydra calls before sweep().
    config: DictConfig
    hydra_context: HydraContext
    launcher: Launcher

    def __init__(
        self,
        storage: str | None = None,
        study_name: str | None = None,
        direction: Any = None,
        n_trials: int = 20,
        max_failure_rate: float = 1.0,
        heartbeat_interval: int = 10,
        grace_period: int = 30,
        top_k: int = 5,
        sampler: Any = None,
        pruner: Any = None,
        params: dict[str, str] | None = None,
        enqueue: list[dict[str, Any]] | None = None,
        trials_per_gpu: int = 1,
        n_jobs: int | None = None,
        custom_search_space: str | None = None,
        trial_overrides: list[str] | None = None,
        if_null: dict[str, list[str]] | None = None,
        if_cluster: list[str] | None = None,
    ) -> None:
        # Checked in setup() (``check``), where a bad value can end the command with one line for any app.
        self.storage_url, self.study_name, self.direction = storage, study_name, direction
        self.n_trials, self.max_failure_rate, self.top_k = n_trials, max_failure_rate, top_k
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        # Resolved plain configs; the job rebuilds the same pruner from the one handed to it.
        self.sampler_conf = OmegaConf.to_container(sampler, resolve=True) if OmegaConf.is_config(sampler) else sampler
        self.pruner_conf = OmegaConf.to_container(pruner, resolve=True) if OmegaConf.is_config(pruner) else pruner
        self.params = dict(params or {})
        self.enqueue = [dict(entry) for entry in enqueue or ()]
        self.trials_per_gpu, self.n_jobs, self.custom_search_space = trials_per_gpu, n_jobs, custom_search_space
        self.trial_overrides = TrialOverrides(trial_overrides, if_null, if_cluster)

    def check(self) -> None:
        """Raise ``SweepOptionError`` (one line) for a sweeper value that is not allowed."""

        def need(ok: bool, key: str, value: Any, allowed: str) -> None:
            if not ok:
                raise SweepOptionError(f"hydra.sweeper.{key}={value!r} is not allowed; {allowed}")

        integer = (int,)
        need(isinstance(self.n_trials, integer) and self.n_trials >= 1, "n_trials", self.n_trials, "must be >= 1")
        need(
            isinstance(self.trials_per_gpu, integer) and self.trials_per_gpu >= 1,
            "trials_per_gpu",
            self.trials_per_gpu,
            "must be an integer >= 1",
        )
        need(
            self.n_jobs is None or (isinstance(self.n_jobs, integer) and (self.n_jobs >= 1 or self.n_jobs == -1)),
            "n_jobs",
            self.n_jobs,
            "must be null (the launcher's), -1 (one per core) or >= 1",
        )
        need(0.0 <= self.max_failure_rate <= 1.0, "max_failure_rate", self.max_failure_rate, "must be in [0, 1]")
        need(self.top_k >= 1, "top_k", self.top_k, "must be >= 1")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise SweepOptionError(
                f"hydra.sweeper.heartbeat_interval={self.heartbeat_interval!r}, grace_period={self.grace_period!r} "
                "are not allowed; need heartbeat_interval >= 1 and grace_period > heartbeat_interval"
            )
        self.trial_overrides.check()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.plugins import Plugins

        _one_line(self.check)
        HydraConfig.instance().set_config(config)  # so ${hydra:...} in hydra.sweep.dir resolves here too
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        return _one_line(lambda: self._sweep(arguments))

    def _sweep(self, arguments: list[str]) -> list[Outcome]:
        # 1. Everything that can be checked without touching the storage or any file.
        distributions, fixed, custom = self._search_space(arguments)
        directions = optuna_study.directions_of(self.direction, self.config)
        metrics = optuna_study.metric_names(self.config, len(directions))
        name = self.study_name or optuna_study.default_study_name(self.config)
        url = self.storage_url or optuna_study.default_storage(self.config)
        sampler = samplers.build_sampler(self.sampler_conf, distributions)
        pruner, self.pruner_conf = samplers.build_pruner(self.pruner_conf, len(directions))

        # 2. The storage and the study (a bad URL, other fixed overrides or directions: one line, nothing written).
        study, storage, record = self._open_study(url, name, directions, fixed, metrics, sampler, pruner)

        # 3. The study's own folder.
        sweep_dir = self._claim_sweep_dir(study, url, record["uid"])

        # 4. Run.
        sweep = self._prepare(study, storage, url, sweep_dir, distributions, fixed, custom, metrics)
        loop = TrialLoop(sweep, self.launcher, self.heartbeat_interval, self.max_failure_rate)
        outcomes = loop.run()

        # 5. Report.
        self._report(loop, fixed, metrics)
        self._raise_on_failures(loop)
        return outcomes

    def _search_space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str], Any]:
        """(distributions by key, fixed overrides, the custom search space function or None), checked."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        distributions, fixed = search_space.split_search_space(parser, self.params, arguments)
        custom = search_space.custom_search_space(self.custom_search_space)
        if not distributions and custom is None:
            raise SearchSpaceError(
                "nothing to sweep: give hydra.sweeper.params or a sweep override (e.g. 'x=choice(1,2)')"
            )
        missing = search_space.missing_keys(self.config, distributions)
        if missing:
            raise SearchSpaceError(
                f"swept key {', '.join(repr(k) for k in missing)} is not in the config; allowed: keys it has "
                f"(python {sys.argv[0]} --cfg job lists them), or +key=... to add one"
            )
        for entry in self.enqueue:
            unknown = sorted(set(entry) - set(distributions))
            if unknown:
                raise SearchSpaceError(f"hydra.sweeper.enqueue: {unknown} not swept; swept: {sorted(distributions)}")
        return distributions, fixed, custom

    def _open_study(self, url, name, directions, fixed, metrics, sampler, pruner) -> tuple[Any, Any, dict]:
        """(study, storage, the study's record), the enqueued settings queued once."""
        import optuna

        from rnnlab.sweep.storage import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created": the progress lines say it
        # Stale trials (their sweep on another host died) run again, once.
        storage = open_storage(url, self.heartbeat_interval, self.grace_period, trial_states.retry_stale)
        settings = optuna_study.fixed_settings(fixed)
        study, record = optuna_study.open_study(
            storage, name, directions, settings, metrics, sampler=sampler, pruner=pruner
        )
        for entry in self.enqueue:
            study.enqueue_trial(entry, skip_if_exists=True)
        return study, storage, record

    def _claim_sweep_dir(self, study: Any, url: str, uid: str) -> Path:
        """The study's sweep directory (``hydra.sweep.dir`` unless another study owns it), claimed, with
        ``multirun.yaml``."""
        from rnnlab.sweep.storage import safe_url

        name = study.study_name
        with read_write(self.config.hydra), open_dict(self.config.hydra):  # for ${hydra.sweeper.study_name}
            self.config.hydra.sweeper.study_name, self.config.hydra.sweeper.storage = name, url
        trial_dirs = {str(Path(t.user_attrs["run_dir"]).parent) for t in study.trials if "run_dir" in t.user_attrs}
        wanted = Path(self.config.hydra.sweep.dir).absolute()
        sweep_dir = optuna_study.owned_sweep_dir(wanted, name, safe_url(url), uid, trial_dirs)
        if sweep_dir != wanted:
            say(prefix=SWEEP, message=f"{wanted} belongs to another study {name!r}: this one writes into {sweep_dir}")
        optuna_study.claim(sweep_dir, name, safe_url(url), uid)
        self._resolve_launcher_folder()
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        return sweep_dir

    def _resolve_launcher_folder(self) -> None:
        """submitit's job folder (``${hydra.sweep.dir}/.submitit/%j``) was resolved when Hydra made the launcher,
        before the study's name (part of hydra.sweep.dir) was known: resolve it again, into the study's folder."""
        params = getattr(self.launcher, "params", None)
        folder = OmegaConf.select(self.config, "hydra.launcher.submitit_folder", default=None)
        if isinstance(params, dict) and "submitit_folder" in params and folder is not None:
            params["submitit_folder"] = str(folder)

    def _prepare(self, study, storage, url, sweep_dir, distributions, fixed, custom, metrics) -> Sweep:
        """The sweep as the loop runs it: where trials run, what they are told, how many the study holds."""
        from rnnlab.sweep.storage import safe_url

        where = placement.plan(self.config, self.n_jobs, self.trials_per_gpu)
        values: dict[str, Any] = {
            "storage": url,
            "study_name": study.study_name,
            "pruner": self.pruner_conf,
            "sweep_folder": sweep_dir.name,
        }
        if where.core_share is not None:
            values["core_share"] = where.core_share
        if len(metrics) > 1:
            values["first_metric"] = metrics[0]
        per_job = [
            *fixed,
            *where.overrides,
            *self.trial_overrides.per_sweep(self.config, values, on_cluster=where.core_share is None),
        ]
        grid_points = samplers.grid_size(self.sampler_conf, distributions)
        n_trials = budget.capped("hydra.sweeper.n_trials", min(self.n_trials, grid_points or self.n_trials))
        trial_states.fail_dead_trials(study, storage)  # a killed sweep's trials: lost, not done
        counted = trial_states.counted(study.get_trials(deepcopy=False))
        done = sum(t.state.is_finished() for t in counted)
        running = len(counted) - done  # other sweeps' (or a killed sweep's trial not yet found out)
        say(
            prefix=SWEEP,
            message=f"study {study.study_name!r} on {safe_url(url)}: {done} of {n_trials} trials done"
            f"{f', {running} running elsewhere' if running else ''}; sweep dir {sweep_dir}",
        )
        maximize = [d.name.lower() == "maximize" for d in study.directions]
        progress = Progress(n_trials, where.parallel, maximize, metrics)
        return Sweep(
            config=self.config,
            study=study,
            storage=storage,
            url=url,
            sweep_dir=sweep_dir,
            n_trials=n_trials,
            placement=where,
            per_job=per_job,
            distributions=distributions,
            custom=custom,
            progress=progress,
            overrides=self.trial_overrides,
            values=values,
        )

    def _report(self, loop: TrialLoop, fixed: list[str], metrics: list[str]) -> None:
        from rnnlab.sweep.results import plot_pareto, top_trials_table, write_best, write_optimization_results

        study, sweep_dir, n_trials = loop.sweep.study, loop.sweep.sweep_dir, loop.sweep.n_trials
        show(top_trials_table(study, self.top_k, metrics))
        base = [o for o in fixed if not o.lstrip("+~").startswith(optuna_study.EXECUTION_PREFIXES)]
        full = [o for o in base if o.split("=")[0].lstrip("+~") not in SWEEP_ONLY_KEYS]
        script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "src/train.py"
        best_path = write_best(study, sweep_dir, base, metrics, full, script)
        if best_path:
            write_optimization_results(study, sweep_dir)
            show(f"best trial{'s' if len(metrics) > 1 else ''} written to {best_path}")
        plot = plot_pareto(study, sweep_dir, metrics) if len(metrics) > 1 else None
        if plot:
            show(f"Pareto front plotted in {plot}")
        done = loop.counted()
        grid_points = samplers.grid_size(self.sampler_conf, loop.sweep.distributions)
        if grid_points is not None and (done >= grid_points or loop.stop.is_set()):
            say(
                prefix=SWEEP,
                message=f"the sampler has tried every point of its grid ({grid_points} points, {done} trials)",
            )
        elif done >= n_trials and not loop.outcomes:
            say(
                prefix=SWEEP,
                message=f"study {study.study_name!r} already holds its {done} trials: raise hydra.sweeper.n_trials "
                f"(e.g. hydra.sweeper.n_trials={n_trials + 10}) to continue it",
            )

    def _raise_on_failures(self, loop: TrialLoop) -> None:
        outcomes = loop.outcomes
        failures = [(number, reason) for number, state, reason in outcomes if state == "FAIL"]
        if not failures:
            return
        number, reason = failures[0]
        if len(failures) == len(outcomes):
            raise SweepFailedError(
                f"all {len(outcomes)} trials of this sweep failed; first error (trial {number}): {reason}"
            )
        if loop.too_many_failures():
            raise SweepFailedError(
                f"{len(failures)} of {len(outcomes)} trials failed, more than hydra.sweeper.max_failure_rate="
                f"{self.max_failure_rate}; first error (trial {number}): {reason}"
            )


def _one_line(action):
    """Run ``action``; a ``CommandError`` ends the command with one ``error:`` line (any Hydra app: Hydra lets
    SystemExit through)."""
    try:
        return action()
    except CommandError as error:
        raise SystemExit(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
