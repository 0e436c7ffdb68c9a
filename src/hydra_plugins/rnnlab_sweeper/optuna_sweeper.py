"""A Hydra sweeper on current Optuna: ask/tell on an RDB storage, pruning, failure tolerance, nothing lost.

Each trial is asked from the stored study, launched as a Hydra job with its sampled overrides (plus, for rnnlab's
config, ``++optuna_trial.{storage,study_name,number,pruner}`` so the job can report to it and be pruned), and
told COMPLETE, PRUNED (the job raised ``optuna.TrialPruned``) or FAIL (it raised, or returned NaN/inf). Every
mistake in the sweep's own settings is one ``error:`` line before any trial runs, with the study and its files
left as they were. Helpers: ``search_space`` (syntax -> distributions), ``study`` (defaults, what a study
remembers, the folder it owns), ``trials`` (heartbeats, lost trials, telling), ``progress`` (console lines).
Optuna is imported lazily: Hydra imports this module on every run, sweep or not.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.rnnlab_sweeper import search_space, trials
from hydra_plugins.rnnlab_sweeper import study as studies
from hydra_plugins.rnnlab_sweeper.progress import Progress
from hydra_plugins.rnnlab_sweeper.search_space import SearchSpaceError, distribution_of  # noqa: F401 (public)
from rnnlab import budget
from rnnlab.console import SWEEP, say, show
from rnnlab.errors import CommandError, first_line

TRIAL_KEY = "optuna_trial"  # the job config node naming the job's trial (rnnlab's conf/hparams_search)
# Command-line groups that only configure the sweep (its budget): best.yaml's command (the full training) leaves
# them out, its trial_command keeps them.
SWEEP_ONLY_KEYS = ("hparams_search",)
# Launchers that run trials on this machine, whose GPUs the sweeper hands out (others, e.g. SLURM, get theirs
# from the cluster).
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")
GRID_SAMPLERS = ("GridSampler", "BruteForceSampler")
QUIET_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",  # "#<n> : <overrides>" per trial
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.seed",
)
SAMPLER_PACKAGES = {"CmaEsSampler": ("cmaes",), "GPSampler": ("torch", "scipy")}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
# How long a trial slot whose job was cut short (its worker gone, the job exited) waits for the sweep's own
# signal handler, before it records the outcome: Ctrl-C reaches the workers and the sweep at once, and the
# handler runs in the main thread a moment later. Past it, the trial failed on its own.
SIGNAL_GRACE_S = 1.0
LOST = "LOST"  # a trial's outcome when the cluster ended its job: recorded FAIL (lost) and asked again


class SweepFailedError(CommandError, RuntimeError):
    """Too many (or all) of a sweep's trials failed; the message names the first error (printed as one line)."""


class SweepOptionError(CommandError, ValueError):
    """A ``hydra.sweeper.*`` value that is not allowed (one line)."""


class _Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM reached the sweep (raised where its main thread is; a trial's run record says
    "interrupted")."""


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
        self.gpus: list[int | None] = []  # the GPU of each parallel trial (None: the trial's own trainer config)
        self._study_lock = threading.Lock()  # parallel slots share the study object
        self._running: dict[int, float] = {}  # numbers of the trials this sweep runs now
        self._stop = threading.Event()  # no more trials: interrupted, grid exhausted
        self._signal: signal.Signals | None = None
        self._signalled = threading.Event()  # set with ``_signal``: trial slots wait on it
        self._shield = 0  # > 0 while the main thread is in a section a signal must not cut (``_shielded``)
        self._distributions: dict[str, Any] = {}
        self._grid_points: int | None = None  # the points of a grid or brute-force sampler's search space

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

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.plugins import Plugins

        _one_line(self.check)
        HydraConfig.instance().set_config(config)  # so ${hydra:...} in hydra.sweep.dir resolves here too
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # --------------------------------------------------------------------------------- where trials run

    def _parallel_jobs(self) -> int:
        """How many trials run at once: ``n_jobs``, else the launcher's (joblib's n_jobs, SLURM's
        array_parallelism); the basic launcher runs one at a time (it runs trials in this process)."""
        from rnnlab.devices import cpu_share

        launcher = self.config.hydra.launcher
        if not str(launcher.get("_target_", "")).endswith(LOCAL_LAUNCHERS[1]) and self._local_launcher():
            return 1
        n_jobs = self.n_jobs or int(launcher.get("n_jobs") or launcher.get("array_parallelism") or 1)
        return cpu_share(1) if n_jobs < 0 else n_jobs  # joblib: -1 = one job per core

    def _local_launcher(self) -> bool:
        """Whether trials run on this machine (its cores and GPUs are shared among them)."""
        return str(self.config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1] in LOCAL_LAUNCHERS

    def _gpu_plan(self, parallel: int) -> tuple[int, list[str], list[int | None]]:
        """(trials run at once, overrides for every trial, the GPU index of each parallel trial or None).

        Only for GPU trials (trainer.accelerator gpu/cuda) on a launcher of this machine: each parallel trial
        gets its own visible GPU (``gpu_slots``); without any GPU the trials fall back to CPU, with a notice.
        """
        from rnnlab.devices import GPU_ACCELERATORS, cuda_device_count
        from rnnlab.sweep.gpus import gpu_slots

        accelerator = str(OmegaConf.select(self.config, "trainer.accelerator", default="auto"))
        if accelerator not in GPU_ACCELERATORS or not self._local_launcher():
            return parallel, [], [None] * parallel
        count = cuda_device_count()
        if count == 0:
            say(
                f"no GPU visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): "
                "trials run on CPU (trainer.accelerator=cpu)"
            )
            return parallel, ["trainer.accelerator=cpu", "trainer.devices=1"], [None] * parallel
        slots = gpu_slots(parallel, count, self.trials_per_gpu)
        return len(slots), [], list(slots)

    def _app_overrides(self, parallel: int, metrics: list[str]) -> list[str]:
        """What rnnlab's config gets on top of the fixed overrides, only where the app's config has the keys:
        a share of the cores, the first objective for the best checkpoint of a multi-objective study."""
        from rnnlab.devices import cpu_share

        extra = []
        if "threads" in self.config and self.config.get("threads") is None and self._local_launcher():
            extra.append(f"threads={cpu_share(parallel)}")  # not set by the user: a share of the cores,
            if TRIAL_KEY in self.config:  # rebalanced every epoch among the live trials
                extra.append(f"++{TRIAL_KEY}.share_cores=true")
        if len(metrics) > 1:
            for callback in ("model_checkpoint", "early_stopping"):
                key = f"callbacks.{callback}.monitor"
                if search_space.has_key(self.config, key):
                    extra.append(f"{key}={metrics[0]}")
        return extra

    def _resolve_launcher_folder(self) -> None:
        """submitit's job folder (``${hydra.sweep.dir}/.submitit/%j``) was resolved when Hydra made the launcher,
        before the study's name (part of hydra.sweep.dir) was known: resolve it again, into the study's folder."""
        params = getattr(self.launcher, "params", None)
        folder = OmegaConf.select(self.config, "hydra.launcher.submitit_folder", default=None)
        if isinstance(params, dict) and "submitit_folder" in params and folder is not None:
            params["submitit_folder"] = str(folder)

    # --------------------------------------------------------------------------------- sweep

    def sweep(self, arguments: list[str]) -> Any:
        return _one_line(lambda: self._sweep(arguments))

    def _sweep(self, arguments: list[str]) -> Any:
        from rnnlab.sweep.storage import open_storage, safe_url

        # 1. Everything that can be checked without touching the storage or any file.
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
        directions = studies.directions_of(self.direction, self.config)
        metrics = studies.metric_names(self.config, len(directions))
        name = self.study_name or studies.default_study_name(self.config)
        url = self.storage_url or studies.default_storage(self.config)
        sampler = self._sampler(distributions)
        pruner = self._pruner(len(directions))
        self._distributions = distributions

        # 2. The storage and the study (a bad URL, other fixed overrides or directions: one line, nothing written).
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created": the progress lines say it
        # Stale trials (their sweep on another host died) run again, once.
        storage = open_storage(url, self.heartbeat_interval, self.grace_period, trials.retry_stale)
        settings = studies.fixed_settings(fixed)
        study, record = studies.open_study(storage, name, directions, settings, metrics, sampler=sampler, pruner=pruner)
        for entry in self.enqueue:
            study.enqueue_trial(entry, skip_if_exists=True)

        # 3. The study's own folder.
        with read_write(self.config.hydra), open_dict(self.config.hydra):  # for ${hydra.sweeper.study_name}
            self.config.hydra.sweeper.study_name, self.config.hydra.sweeper.storage = name, url
        trial_dirs = {str(Path(t.user_attrs["run_dir"]).parent) for t in study.trials if "run_dir" in t.user_attrs}
        wanted = Path(self.config.hydra.sweep.dir).absolute()
        sweep_dir = studies.owned_sweep_dir(wanted, name, safe_url(url), record["uid"], trial_dirs)
        if sweep_dir != wanted:
            say(prefix=SWEEP, message=f"{wanted} belongs to another study {name!r}: this one writes into {sweep_dir}")
        studies.claim(sweep_dir, name, safe_url(url), record["uid"])
        self._resolve_launcher_folder()
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        # 4. Run.
        parallel, device_overrides, self.gpus = self._gpu_plan(self._parallel_jobs())
        per_job = [*fixed, *device_overrides, *self._app_overrides(parallel, metrics)]
        self._grid_points = _grid_size(sampler, distributions)
        n_trials = budget.capped("hydra.sweeper.n_trials", min(self.n_trials, self._grid_points or self.n_trials))
        done = len(trials.counted(study.get_trials(deepcopy=False)))
        say(
            prefix=SWEEP,
            message=f"study {name!r} on {safe_url(url)}: {done} of {n_trials} trials done; sweep dir {sweep_dir}",
        )
        progress = Progress(n_trials, parallel, [d == "maximize" for d in directions], metrics)
        outcomes = self._run(study, storage, n_trials, parallel, per_job, sweep_dir, custom, url, progress)

        # 5. Report.
        self._report(study, sweep_dir, fixed, metrics, n_trials, outcomes)
        self._raise_on_failures(outcomes)
        return outcomes

    def _sampler(self, distributions: dict) -> Any:
        """The sampler; a grid sampler gets the grid of the discrete params (only those are allowed)."""
        if not self.sampler_conf:
            return None
        target = str(self.sampler_conf.get("_target_", ""))
        for needed in SAMPLER_PACKAGES.get(target.rsplit(".", 1)[-1], ()):  # Optuna imports them only when sampling
            if importlib.util.find_spec(needed) is None:
                raise SweepOptionError(
                    f"hydra.sweeper.sampler {target!r} cannot be built: it needs the {needed} package "
                    f"(pip install {needed}); allowed without it: tpe, random, grid, brute_force, nsgaii, qmc"
                )
        extra = {}
        if target.endswith(GRID_SAMPLERS):  # both need a finite grid: every key a choice() or a range()
            grid = {key: _grid_values(key, dist, target.rsplit(".", 1)[-1]) for key, dist in distributions.items()}
            if target.endswith(GRID_SAMPLERS[0]):
                extra["search_space"] = grid
        try:
            sampler = instantiate(self.sampler_conf, **extra)
            return sampler(**extra) if callable(sampler) and not hasattr(sampler, "sample_relative") else sampler
        except Exception as error:
            cause = error.__cause__ or error
            raise SweepOptionError(
                f"hydra.sweeper.sampler {target!r} cannot be built: {first_line(cause)}; allowed: an Optuna sampler "
                "(hydra/sweeper/sampler=tpe, random, grid, brute_force, cmaes (needs the cmaes package), nsgaii, "
                "gp, qmc)"
            ) from None

    def _pruner(self, n_objectives: int) -> Any:
        import optuna

        if n_objectives > 1:
            if self.pruner_conf and "NopPruner" not in str(self.pruner_conf.get("_target_")):
                say(
                    prefix=SWEEP,
                    message=f"{n_objectives} objectives: pruning is off (Optuna prunes single-objective studies)",
                )
            self.pruner_conf = None
            return optuna.pruners.NopPruner()
        return instantiate(self.pruner_conf) if self.pruner_conf else None

    def _run(self, study, storage, n_trials, parallel, per_job, sweep_dir, custom, url, progress) -> list:
        """Run trials in ``parallel`` slots until the study holds ``n_trials``; SIGINT/SIGTERM stop it with the
        running trials recorded as lost (run again by the next sweep)."""
        heartbeats = self._heartbeats = trials.Heartbeats(storage, self.heartbeat_interval)
        outcomes: list[tuple[int, str, str | None]] = []  # (trial number, state, error) of this run
        context = (study, storage, per_job, sweep_dir, custom, url, heartbeats, progress, n_trials)

        def run_slot(slot: int) -> None:
            # A slot asks for its next trial as soon as its last one ends (completed, pruned or failed): a pruned
            # trial frees its worker at once instead of idling until the slowest trial of a batch is done.
            while (asked := self._next_trial(study, storage, n_trials, outcomes, custom)) is not None:
                outcome = self._run_trial(slot, *asked, context)
                with self._study_lock:
                    outcomes.append(outcome)

        previous = {sig: signal.signal(sig, self._on_signal) for sig in EXIT_CODES}
        # Hydra's "Launching 1 jobs locally" + overrides per trial, Lightning's "GPU available" and seeds: the
        # progress lines say what matters (a trial's train.log keeps its own lines).
        quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        try:
            if parallel == 1:
                run_slot(0)  # in this thread: the basic launcher runs the trial in this process
            else:
                with ThreadPoolExecutor(parallel, thread_name_prefix="trial-slot") as slots:
                    futures = [slots.submit(run_slot, slot) for slot in range(parallel)]
                    try:
                        for future in futures:
                            future.result()
                    except _Interrupted:
                        self._stop.set()
                        self._record_interrupted(study, storage)
                        while not all(future.done() for future in futures):
                            _stop_local_workers()  # and any worker the launcher started since
                            wait(futures, timeout=0.5)
                        raise
        except (_Interrupted, KeyboardInterrupt):
            self._stop.set()
            self._record_interrupted(study, storage)
            name = signal.Signals(self._signal or signal.SIGINT).name
            print(
                f"error: sweep interrupted by {name}: its running trials are recorded FAIL (lost) and run again "
                "first when you run the same command again",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_CODES.get(self._signal or signal.SIGINT, 130)) from None
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            heartbeats.close()
        return outcomes

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is None:
            self._signal = signal.Signals(signum)
            self._signalled.set()
            for sig in EXIT_CODES:  # a second Ctrl-C must not cut the recording short
                signal.signal(sig, signal.SIG_IGN)
            if self._shield == 0:  # else raised as the shielded section ends
                raise _Interrupted()

    @contextmanager
    def _shielded(self):
        """In the main thread: a signal waits until the section ends (a trial is asked and marked as this
        sweep's, or told, as one step), then interrupts."""
        main = threading.current_thread() is threading.main_thread()
        self._shield += main
        try:
            yield
        finally:
            self._shield -= main
        if main and self._shield == 0 and self._signal is not None:
            raise _Interrupted()

    def _record_interrupted(self, study, storage) -> None:
        name = signal.Signals(self._signal or signal.SIGINT).name
        with self._study_lock:  # no slot records an outcome meanwhile (its error would replace the lost reason)
            for number in list(self._running):
                trials.fail_lost(study, storage, number, f"lost: the sweep was interrupted by {name}")

    def _next_trial(self, study, storage, n_trials, outcomes, custom) -> tuple[Any, int] | None:
        """(trial, position) of the next trial to run, asked from the stored study; None once it holds
        ``n_trials`` counted trials (or too many of this run's trials failed, or the sweep is stopping)."""
        import optuna

        from rnnlab.sweep.workers import this_worker

        with self._shielded(), self._study_lock:  # one ask (and count) at a time across the slots
            if self._stop.is_set() or self._too_many_failures(outcomes):
                return None
            trials.fail_dead_trials(study, storage)
            done = len(trials.counted(study.get_trials(deepcopy=False)))
            if done >= n_trials:
                return None
            with warnings.catch_warnings():
                # Optuna warns that heartbeats are meant for optimize(); Heartbeats does that job here.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = study.ask(self._distributions)
            self._running[trial.number] = time.monotonic()
            for key, value in this_worker().items():  # which machine and sweep process: a kill is found by it
                trial.set_user_attr(key, value)
            self._heartbeats.add(trials.trial_id(storage, study, trial.number))
            if custom is not None:
                custom(self.config, trial)
            return trial, done + 1

    def _run_trial(self, slot: int, trial, position: int, context) -> tuple[int, str, str | None]:
        """Launch one trial as a job of the configured launcher in parallel slot ``slot``; its outcome."""
        from rnnlab.sweep.results import override_value

        study, storage, per_job, sweep_dir, custom, url, heartbeats, progress, n_trials = context
        tid = trials.trial_id(storage, study, trial.number)
        run_dir = sweep_dir / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        gpu = self.gpus[slot]
        if gpu is not None:
            trial.set_user_attr("gpu", gpu)  # torch's index among the visible GPUs
        overrides = [
            *per_job,
            *([f"trainer.devices=[{gpu}]"] if gpu is not None else []),
            *(f"{key}={override_value(value)}" for key, value in trial.params.items()),
            *self._trial_overrides(trial.number, url, study.study_name, sweep_dir.name),
            f"hydra.sweep.dir={override_value(str(sweep_dir))}",
            f"hydra.sweep.subdir={run_dir.name}",
        ]
        progress.start(trial.number, position, trial.params, trial.user_attrs.get(trials.RETRY_ATTR))
        try:
            # No validate_batch_is_legal: it composes the job's config once more in this process (~0.3 s a
            # trial); a config that does not compose fails in the launcher just the same, and lands below.
            result: Any = self.launcher.launch([overrides], initial_job_idx=trial.number)[0]
        except BaseException as error:  # a composition or launcher failure, or the job cut short by a signal or a kill
            # (Lightning turns Ctrl-C into SystemExit; a worker killed by Ctrl-C breaks the launcher's pool)
            if self._signal is None and threading.current_thread() is not threading.main_thread():
                self._signalled.wait(SIGNAL_GRACE_S)  # a Ctrl-C is the sweep's too: its handler runs in a moment
            if self._signal is not None or isinstance(error, (KeyboardInterrupt, _Interrupted)):
                raise _Interrupted() from None
            result = error if isinstance(error, Exception) else RuntimeError(f"the job exited: {first_line(error)}")
        try:
            with (
                self._shielded(),
                self._study_lock,
            ):  # the slots' tells (and the sampler's after-trial work) one at a time
                if self._signal is not None:  # the trial is lost, whatever its job said: _record_interrupted says so
                    raise _Interrupted()
                lost = trials.scheduler_loss(result)  # the cluster ended its job (scancel, time limit, ...)
                state: str
                values: list[float] | None
                reason: str | None
                try:
                    if lost is not None:
                        trials.fail_lost(study, storage, trial.number, lost)  # and asked again, once
                        state, values, reason = LOST, None, lost
                    else:
                        state, values, reason = trials.tell(study, trial, result, len(study.directions))
                except trials.GridExhausted:  # this trial is recorded; there is no other point to try
                    self._stop.set()
                    frozen = storage.get_trial(tid)
                    state, values, reason = frozen.state.name, frozen.values, frozen.user_attrs.get(trials.ERROR_ATTR)
                self._running.pop(trial.number, None)
                remaining = max(0, n_trials - len(trials.counted(study.get_trials(deepcopy=False))))
        finally:
            heartbeats.discard(tid)
        if state == "FAIL":
            _keep_traceback(run_dir, result)
        progress.end(trial.number, _outcome_text(study, trial.number, state, values, reason), values, remaining)
        return trial.number, state, reason

    def _trial_overrides(self, number: int, url: str, name: str, folder: str) -> list[str]:
        """rnnlab's per-trial keys, where the app's config has them: which trial to report to, the TensorBoard
        folder of the trial beside single runs (``logs/<task>/sweeps/<study folder>/trial_<n>``)."""
        from rnnlab.sweep.results import override_value

        extra = []
        if TRIAL_KEY in self.config:
            extra += [
                f"++{TRIAL_KEY}.storage={override_value(url)}",
                f"++{TRIAL_KEY}.study_name={override_value(name)}",
                f"++{TRIAL_KEY}.number={number}",
                f"++{TRIAL_KEY}.pruner={override_value(self.pruner_conf)}",
            ]
        tensorboard = "logger.tensorboard.save_dir"
        if all(search_space.has_key(self.config, key) for key in (tensorboard, "paths.log_dir", "task_name")):
            extra.append(f"{tensorboard}='${{paths.log_dir}}/${{task_name}}/sweeps/{folder}/trial_{number}'")
        return extra

    def _report(self, study, sweep_dir: Path, fixed: list[str], metrics: list[str], n_trials: int, outcomes) -> None:
        from rnnlab.sweep.results import (
            plot_pareto,
            top_trials_table,
            write_best,
            write_optimization_results,
        )

        show(top_trials_table(study, self.top_k, metrics))
        base = [o for o in fixed if not o.lstrip("+~").startswith(studies.EXECUTION_PREFIXES)]
        full = [o for o in base if o.split("=")[0].lstrip("+~") not in SWEEP_ONLY_KEYS]
        script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "src/train.py"
        best_path = write_best(study, sweep_dir, base, metrics, full, script)
        if best_path:
            write_optimization_results(study, sweep_dir)
            show(f"best trial{'s' if len(metrics) > 1 else ''} written to {best_path}")
        plot = plot_pareto(study, sweep_dir, metrics) if len(metrics) > 1 else None
        if plot:
            show(f"Pareto front plotted in {plot}")
        done = len(trials.counted(study.get_trials(deepcopy=False)))
        if self._grid_points is not None and (done >= self._grid_points or self._stop.is_set()):
            say(
                prefix=SWEEP,
                message=f"the sampler has tried every point of its grid ({self._grid_points} points, {done} trials)",
            )
        elif done >= n_trials and not outcomes:
            say(
                prefix=SWEEP,
                message=f"study {study.study_name!r} already holds its {done} trials: raise hydra.sweeper.n_trials "
                f"(e.g. hydra.sweeper.n_trials={n_trials + 10}) to continue it",
            )

    def _too_many_failures(self, outcomes) -> bool:
        failed = sum(state == "FAIL" for _, state, _ in outcomes)
        return bool(outcomes) and failed / len(outcomes) > self.max_failure_rate

    def _raise_on_failures(self, outcomes) -> None:
        failures = [(number, reason) for number, state, reason in outcomes if state == "FAIL"]
        if not failures:
            return
        number, reason = failures[0]
        if len(failures) == len(outcomes):
            raise SweepFailedError(
                f"all {len(outcomes)} trials of this sweep failed; first error (trial {number}): {reason}"
            )
        if self._too_many_failures(outcomes):
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


def _keep_traceback(run_dir: Path, result: Any) -> None:
    """A failed trial's traceback in ``<trial dir>/traceback.txt`` (the console shows its first line)."""
    import traceback

    _, error = trials.job_outcome(result)
    if error is not None and error.__traceback__ is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "traceback.txt").write_text("".join(traceback.format_exception(error)))


def _outcome_text(study, number: int, state: str, values, reason) -> str:
    if state == "PRUNED":
        steps = study.trials[number].intermediate_values
        return f"pruned at epoch {max(steps)}" if steps else "pruned"
    if state == "FAIL":
        return f"failed: {reason}"
    if state == LOST:
        return f"{reason}; it runs again"
    metrics = (study.user_attrs.get(studies.STUDY_ATTR) or {}).get("metrics") or []
    names = metrics if len(metrics) == len(values or ()) else [f"value_{i}" for i in range(len(values or ()))]
    return "done: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values or ()))


def _grid_values(key: str, distribution, sampler: str = "GridSampler") -> list:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = round((distribution.high - distribution.low) / distribution.step) + 1
        return [distribution.low + i * distribution.step for i in range(count)]
    name = "grid" if sampler == "GridSampler" else "brute_force"
    raise SweepOptionError(
        f"hydra/sweeper/sampler={name} cannot search {key}: a grid needs choice(...) or range(...), not an interval"
    )


def _grid_size(sampler, distributions: dict) -> int | None:
    """How many points a grid or brute-force sampler can try (None: not such a sampler, or not finite)."""
    if type(sampler).__name__ not in GRID_SAMPLERS:
        return None
    size = 1
    for key, distribution in distributions.items():
        try:
            size *= len(_grid_values(key, distribution))
        except SweepOptionError:
            return None
    return size


def _stop_local_workers() -> None:
    """Stop this process's children (the joblib launcher's workers, running the interrupted trials) with
    SIGTERM, so an interrupted parallel sweep ends at once. Linux (``/proc``); elsewhere they finish their trial."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            if parent == me:
                os.kill(int(stat.parent.name), signal.SIGTERM)
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
