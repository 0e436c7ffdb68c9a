"""A Hydra sweeper on current Optuna: ask/tell on an RDB storage, pruning, failure tolerance, resume.

Each trial is asked from the stored study, launched as a Hydra job with its sampled overrides plus
``++optuna_trial.{storage,study_name,number}`` (so the job can report to it and be pruned), and told
COMPLETE, PRUNED (the job raised ``optuna.TrialPruned``) or FAIL (it raised, or returned NaN/inf).
While trials run the sweeper records their heartbeats; a later sweep marks the RUNNING trials of a
killed sweep FAIL once their heartbeat is older than ``grace_period``. Optuna is imported lazily: Hydra
imports this module on every run, sweep or not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import CommandError, first_line

log = logging.getLogger(__name__)

DIRECTIONS = {"max": "maximize", "min": "minimize"}
SEARCH_TAGS = {"log"}
TRIAL_KEY = "optuna_trial"  # the job config node naming the job's trial
# Command-line groups that only configure the sweep; a best-trial rerun leaves them out.
SWEEP_ONLY_KEYS = ("hparams_search",)
# Launchers that run trials on this machine, whose GPUs the sweeper hands out (others, e.g. SLURM, get theirs
# from the cluster).
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")


class SweepFailedError(CommandError, RuntimeError):
    """Too many (or all) of a sweep's trials failed; the message names the first error (printed as one line)."""


class SearchSpaceError(ValueError):
    """A ``hydra.sweeper.params`` entry that cannot become an Optuna distribution."""


def distribution_of(override: Override):
    """The Optuna distribution for one sweep override (choice / range / interval, ``tag(log, ...)``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, sweep = override.get_key_element(), override.value()
    unknown_tags = set(getattr(sweep, "tags", ())) - SEARCH_TAGS
    if unknown_tags:
        raise SearchSpaceError(f"{key}: tag {sorted(unknown_tags)} is not allowed; allowed: {sorted(SEARCH_TAGS)}")
    log_scale = "log" in getattr(sweep, "tags", ())
    if isinstance(sweep, ChoiceSweep):
        if log_scale:
            raise SearchSpaceError(f"{key}: tag(log, ...) needs interval(...), not choice(...)")
        for choice in sweep.list:
            if not isinstance(choice, (str, int, float, bool)):
                raise SearchSpaceError(
                    f"{key}: choice {choice!r} is not allowed; choices must be str, int, float or bool"
                )
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        if log_scale:
            raise SearchSpaceError(f"{key}: tag(log, ...) needs interval(...), not range(...)")
        values = list(sweep.range())
        if not values:
            raise SearchSpaceError(f"{key}: range({sweep.start}, {sweep.stop}, {sweep.step}) is empty")
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
            return IntDistribution(values[0], values[-1], step=int(sweep.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step))
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise SearchSpaceError(
        f"{key}={override.get_value_element_as_str()} is not a search space; allowed: choice(...), range(...), "
        "interval(a, b), int(interval(a, b)), tag(log, interval(a, b))"
    )


class _Heartbeats:
    """Records a heartbeat for every trial this sweep is running, every ``interval`` seconds."""

    def __init__(self, storage: Any, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="optuna-heartbeats", daemon=True)
        self.thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)  # at once: a trial without any heartbeat never goes stale
        with self.lock:
            self.trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                running = list(self.trial_ids)
            for trial_id in running:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as error:  # a busy database must not kill the sweep; the next beat retries
                    log.warning(f"heartbeat of trial id {trial_id} not recorded: {error}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class RnnlabOptunaSweeper(Sweeper):
    def __init__(
        self,
        storage: str,
        study_name: str,
        direction: str,
        n_trials: int,
        max_failure_rate: float,
        heartbeat_interval: int,
        grace_period: int,
        top_k: int,
        sampler: Any,
        pruner: Any,
        params: dict[str, str] | None,
        enqueue: list[dict[str, Any]] | None = None,
        trials_per_gpu: int = 1,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction={direction!r} is not allowed; allowed: {', '.join(DIRECTIONS)}")
        if n_trials < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials!r} is not allowed; must be >= 1")
        if not isinstance(trials_per_gpu, int) or trials_per_gpu < 1:
            raise ValueError(f"hydra.sweeper.trials_per_gpu={trials_per_gpu!r} is not allowed; must be an integer >= 1")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate!r} is not allowed; must be in [0, 1]")
        if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
            raise ValueError(
                f"hydra.sweeper.heartbeat_interval={heartbeat_interval!r}, grace_period={grace_period!r} are not "
                "allowed; need heartbeat_interval >= 1 and grace_period > heartbeat_interval"
            )
        self.storage_url, self.study_name, self.direction = storage, study_name, DIRECTIONS[direction]
        self.n_trials, self.max_failure_rate, self.top_k = n_trials, max_failure_rate, top_k
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        # Resolved plain configs; the job rebuilds the same pruner from the one handed to it.
        self.sampler_conf = OmegaConf.to_container(sampler) if sampler is not None else None
        self.pruner_conf = OmegaConf.to_container(pruner) if pruner is not None else None
        self.params = dict(params or {})
        self.enqueue = [dict(entry) for entry in enqueue or ()]
        self.trials_per_gpu = trials_per_gpu
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None
        self.gpus: list[int | None] = []  # the GPU of each parallel trial (None: the trial's own trainer config)
        self._study_lock = threading.Lock()  # parallel slots share the study object

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.plugins import Plugins

        HydraConfig.instance().set_config(config)  # so ${hydra:...} in hydra.sweep.dir resolves here too
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # --------------------------------------------------------------------------------- search space

    def _search_space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """(distributions by key, fixed overrides): ``params`` first, command-line arguments win."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        merged: dict[str, Override] = {}
        for override in parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments)):
            merged[override.get_key_element()] = override
        distributions, fixed = {}, []
        for key, override in merged.items():
            if override.is_sweep_override():
                distributions[key] = distribution_of(override)
            else:
                fixed.append(override.input_line)
        return distributions, fixed

    def _parallel_jobs(self) -> int:
        """How many jobs the launcher runs at once (joblib's n_jobs, SLURM's array_parallelism; basic: 1)."""
        from rnnlab.devices import cpu_share

        launcher = self.config.hydra.launcher
        n_jobs = int(launcher.get("n_jobs") or launcher.get("array_parallelism") or 1)
        return cpu_share(1) if n_jobs < 0 else n_jobs  # joblib: -1 = one job per core

    def _local_launcher(self) -> bool:
        """Whether trials run on this machine (its cores and GPUs are shared among them)."""
        return str(self.config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1] in LOCAL_LAUNCHERS

    def _gpu_plan(self, parallel: int) -> tuple[int, list[str], list[int | None]]:
        """(trials run at once, overrides for every trial, the GPU index of each parallel trial or None).

        Only for GPU trials (trainer.accelerator gpu/cuda) on a launcher of this machine: each parallel trial
        gets its own visible GPU (``gpu_slots``); without any GPU the trials fall back to CPU, with a notice.
        """
        from rnnlab.devices import GPU_ACCELERATORS, cuda_device_count, visible_gpu_names
        from rnnlab.sweep.gpus import gpu_slots

        accelerator = str(self.config.trainer.get("accelerator", "auto"))
        if accelerator not in GPU_ACCELERATORS or not self._local_launcher():
            return parallel, [], [None] * parallel
        count = cuda_device_count()
        if count == 0:
            print(
                f"[rnnlab] no GPU visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): "
                "trials run on CPU (trainer.accelerator=cpu)"
            )
            return parallel, ["trainer.accelerator=cpu", "trainer.devices=1"], [None] * parallel
        slots = gpu_slots(parallel, count, self.trials_per_gpu)
        names = visible_gpu_names(os.environ, count)
        log.info(
            f"{len(slots)} trials at a time on GPUs {', '.join(names)} "
            f"(hydra.sweeper.trials_per_gpu={self.trials_per_gpu}, launcher jobs {parallel})"
        )
        return len(slots), [], list(slots)

    # --------------------------------------------------------------------------------- sweep

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        from rnnlab.devices import cpu_share
        from rnnlab.sweep.results import top_trials_table, write_best
        from rnnlab.sweep.storage import open_storage

        distributions, fixed = self._search_space(arguments)
        if not distributions:
            raise SearchSpaceError(
                "nothing to sweep: give hydra.sweeper.params or a sweep override (e.g. a=choice(1,2))"
            )
        parallel, device_overrides, self.gpus = self._gpu_plan(self._parallel_jobs())
        per_job = list(fixed) + device_overrides
        if self.config.get("threads") is None and self._local_launcher():  # not set by the user: a share of the cores,
            per_job += [f"threads={cpu_share(parallel)}", f"++{TRIAL_KEY}.share_cores=true"]  # rebalanced each epoch

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        storage = open_storage(self.storage_url, self.heartbeat_interval, self.grace_period)
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            direction=self.direction,
            load_if_exists=True,
            sampler=instantiate(self.sampler_conf) if self.sampler_conf else None,
            pruner=instantiate(self.pruner_conf) if self.pruner_conf else None,
        )
        for entry in self.enqueue:
            unknown = sorted(set(entry) - set(distributions))
            if unknown:
                raise SearchSpaceError(f"hydra.sweeper.enqueue: {unknown} not swept; swept: {sorted(distributions)}")
            study.enqueue_trial(entry, skip_if_exists=True)
        started_states = tuple(state for state in optuna.trial.TrialState if state != optuna.trial.TrialState.WAITING)
        log.info(
            f"Study {self.study_name!r} on {_safe_url(self.storage_url)}: "
            f"{len(study.get_trials(deepcopy=False, states=started_states))} trials so far, "
            f"up to {self.n_trials} in all; sweep dir {sweep_dir}"
        )
        heartbeats = _Heartbeats(storage, self.heartbeat_interval)
        outcomes: list[tuple[int, str, str | None]] = []  # (trial number, state, error) of this run

        def next_trial():
            """The next trial to run, asked from the stored study; None once it holds n_trials (or too many
            of this run's trials failed)."""
            with self._study_lock:  # one ask (and count of started trials) at a time across the slots
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                remaining = self.n_trials - len(study.get_trials(deepcopy=False, states=started_states))
                if remaining <= 0 or self._too_many_failures(outcomes):
                    return None
                with warnings.catch_warnings():
                    # Optuna warns that heartbeats are meant for optimize(); _Heartbeats does that job here.
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    return study.ask(distributions)

        def run_slot(slot: int) -> None:
            # A slot asks for its next trial as soon as its last one ends (completed, pruned or failed): a pruned
            # trial frees its worker at once instead of idling until the slowest trial of a batch is done.
            while (trial := next_trial()) is not None:
                outcome = self._run_trial(study, trial, slot, per_job, sweep_dir, heartbeats)
                with self._study_lock:
                    outcomes.append(outcome)

        try:
            if parallel == 1:
                run_slot(0)  # in this thread: the basic launcher runs the trial in this process
            else:
                with ThreadPoolExecutor(parallel, thread_name_prefix="trial-slot") as slots:
                    for done in [slots.submit(run_slot, slot) for slot in range(parallel)]:
                        done.result()
        finally:
            heartbeats.close()

        print(top_trials_table(study, self.top_k))
        base = [o for o in fixed if o.split("=")[0].lstrip("+~") not in SWEEP_ONLY_KEYS]
        best_path = write_best(study, sweep_dir, base, self.config.get("optimized_metric", "objective"))
        if best_path:
            print(f"best trial written to {best_path}")
        self._raise_on_failures(outcomes)
        return outcomes

    def _run_trial(self, study, trial, slot: int, per_job: list[str], sweep_dir: Path, heartbeats: _Heartbeats):
        """Launch one trial as a job of the configured launcher in parallel slot ``slot``; its outcome."""
        from rnnlab.sweep.results import override_value

        heartbeats.add(trial._trial_id)
        run_dir = sweep_dir / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine and sweep process
        gpu = self.gpus[slot]
        if gpu is not None:
            trial.set_user_attr("gpu", gpu)  # torch's index among the visible GPUs
        overrides = [
            *per_job,
            *([f"trainer.devices=[{gpu}]"] if gpu is not None else []),
            *(f"{key}={override_value(value)}" for key, value in trial.params.items()),
            f"++{TRIAL_KEY}.storage={override_value(self.storage_url)}",
            f"++{TRIAL_KEY}.study_name={override_value(self.study_name)}",
            f"++{TRIAL_KEY}.number={trial.number}",
            f"++{TRIAL_KEY}.pruner={override_value(self.pruner_conf)}",
            f"hydra.sweep.dir={override_value(str(sweep_dir))}",
            f"hydra.sweep.subdir={run_dir.name}",
        ]
        try:
            # No validate_batch_is_legal: it composes the job's config once more in this process (~0.3 s a
            # trial); a config that does not compose fails in the launcher just the same, and lands below.
            result: Any = self.launcher.launch([overrides], initial_job_idx=trial.number)[0]
        except Exception as error:  # composition or launcher failure: the trial failed, the sweep goes on
            result = error
        try:
            with self._study_lock:  # the slots' tells (and the sampler's after-trial work) one at a time
                return self._tell(study, trial, result)
        finally:
            heartbeats.discard(trial._trial_id)

    def _tell(self, study, trial, result: Any) -> tuple[int, str, str | None]:
        import optuna

        from rnnlab.sweep.results import non_finite_reason

        TrialState = optuna.trial.TrialState
        if isinstance(result, JobReturn) and result.status == JobStatus.COMPLETED:
            reason = non_finite_reason(result.return_value)
            if reason is None:
                study.tell(trial, float(result.return_value), skip_if_finished=True)
                log.info(f"trial {trial.number} COMPLETE: {float(result.return_value):.4f} {trial.params}")
                return trial.number, TrialState.COMPLETE.name, None
        else:
            error = result._return_value if isinstance(result, JobReturn) else result
            if isinstance(error, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
                log.info(f"trial {trial.number} PRUNED: {error} {trial.params}")
                return trial.number, TrialState.PRUNED.name, None
            reason = first_line(error) if isinstance(error, BaseException) else f"job status {result.status}"
        trial.set_user_attr("error", reason)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        traceback = result._return_value if isinstance(result, JobReturn) else result
        log.warning(
            f"trial {trial.number} FAIL: {reason} {trial.params}",
            exc_info=traceback if isinstance(traceback, BaseException) else None,
        )
        return trial.number, TrialState.FAIL.name, reason

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


def _safe_url(url: str) -> str:
    """The storage URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
