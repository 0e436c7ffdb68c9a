"""Core sharing among the trials of one sweep running on this machine."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch

from rnnlab.devices import cpu_share
from rnnlab.sweep.workers import worker_alive, worker_host

if TYPE_CHECKING:
    import optuna


def running_on_host(study: optuna.Study, host: str) -> int:
    """How many of the study's trials are running on ``host`` (their ``worker`` attribute is ``host:pid``).

    Only live ones: a trial still RUNNING in the storage whose sweep process is gone (killed) takes no core.
    """
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    here = host == socket.gethostname()
    return sum(worker_host(t.user_attrs) == host and (not here or worker_alive(t.user_attrs)) for t in running)


class ShareCores(pl.Callback):
    """Trials of one sweep running on this machine split its cores: at the start of every training epoch this
    trial takes ``cores // (the study's trials running on this host)`` torch threads.

    So a trial's cores do not sit idle once it ends: when a parallel sweep runs out of trials to start, the
    ones still running take them over (the last, often the largest, trial of a two-worker sweep finishes
    on both cores). The count is logged as ``trial/threads``. Set by the sweeper only when ``threads`` was
    not given (``optuna_trial.share_cores``); the thread count changes the float summation order, so such
    a trial is not bit-for-bit repeatable.
    """

    def __init__(self, study: optuna.Study, host: str | None = None) -> None:
        self.study, self.host = study, host or socket.gethostname()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        threads = cpu_share(max(1, running_on_host(self.study, self.host)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        for logger in trainer.loggers:
            logger.log_metrics({"trial/threads": float(threads)}, step=trainer.global_step)
