"""The trial side of a sweep: a training run that is an Optuna trial reports to it and can be pruned.

A trial job learns its trial from ``optuna_trial.{storage,study_name,number,pruner}`` (set by the sweeper),
reattaches to it, reports the optimised metric every validation epoch and raises ``optuna.TrialPruned``
when the pruner says so. The sweeper records the outcome; jobs never finish trials themselves.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from rnnlab.errors import CommandError, metric_not_logged
from rnnlab.runs.scheduler import slurm_job
from rnnlab.sweep.storage import open_storage
from rnnlab.sweep.workers import SLURM_JOB_ATTR

if TYPE_CHECKING:
    import optuna


def attach_trial(storage_url: str, study_name: str, number: int, pruner: Any = None) -> optuna.trial.Trial:
    """The running trial ``number`` of a stored study, for ``report`` / ``should_prune`` from a job.

    ``pruner`` is the sweep's; None means no pruning (not Optuna's default for a loaded study, median).
    """
    import optuna

    storage = _trial_storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner or optuna.pruners.NopPruner())
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    stored = storage.get_trial(trial_id)
    if stored.state.is_finished():  # its sweep recorded it (lost: a rerun asked its parameters again)
        error = stored.user_attrs.get("error")
        raise CommandError(
            f"trial {number} of study {study_name!r} is already {stored.state.name}"
            f"{f' ({error})' if error else ''}; a trial job trains only a running trial"
        )
    job = slurm_job()
    if job is not None:
        storage.set_trial_user_attr(trial_id, SLURM_JOB_ATTR, job["job_id"])
    return optuna.trial.Trial(study, trial_id)


@lru_cache(maxsize=4)
def _trial_storage(storage_url: str):
    # One storage (engine, connection pool, schema check) per process and URL: a sequential sweep runs all its
    # trials in one process, and opening a storage costs ~0.1 s.
    return open_storage(storage_url)


class OptunaPruning(pl.Callback):
    """Report ``monitor`` to the trial after every validation epoch; raise ``TrialPruned`` when told to.

    A NaN value is reported as such: the median pruner prunes a trial whose intermediate value is NaN.
    """

    def __init__(self, trial: optuna.trial.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import optuna

        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            raise metric_not_logged(self.monitor, trainer.callback_metrics)
        value = float(trainer.callback_metrics[self.monitor])
        epoch = trainer.current_epoch
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {self.monitor}={value:.4g}")


def is_trial(cfg: DictConfig) -> bool:
    """Whether this run is a sweep trial (the sweeper set ``optuna_trial.number``)."""
    spec = cfg.get("optuna_trial")
    return bool(spec) and spec.get("number") is not None


def trial_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The pruning callback (not for several objectives) and ``ShareCores`` (when ``optuna_trial.share_cores``)
    when this run is a sweep trial (``optuna_trial.number`` set), else nothing.

    ``optuna_trial.pruner`` is the sweep's resolved pruner config, handed over by the sweeper.
    """
    if not is_trial(cfg):
        return []
    spec = cfg.optuna_trial
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    pruner = instantiate(spec.pruner) if spec.get("pruner") else None
    trial = attach_trial(spec.storage, spec.study_name, int(spec.number), pruner)
    callbacks: list[pl.Callback] = []
    if not OmegaConf.is_list(cfg.optimized_metric):  # Optuna reports and prunes single-objective trials only
        callbacks.append(OptunaPruning(trial, cfg.optimized_metric))
    if spec.get("share_cores"):
        from rnnlab.sweep.cores import ShareCores

        callbacks.append(ShareCores(trial.study))
    return callbacks
