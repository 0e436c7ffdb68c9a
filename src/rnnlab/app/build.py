"""Building a run's parts from its config: threads, datamodule, model, loggers, callbacks, trainer."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelSummary, ProgressBar

from rnnlab import budget
from rnnlab.app.requeue import lightning_plugins
from rnnlab.app.rundirs import load_run_config, run_dir_of_checkpoint
from rnnlab.app.validate import check_trainer
from rnnlab.callbacks.events import EpochEventsBeforeCheckpoint
from rnnlab.devices import available_cores
from rnnlab.models import RecurrentModel


def set_threads(num_threads: int | None) -> int:
    """Pin torch's intra-op threads: all cores this process may use unless told otherwise.

    Parallel sweep trials pass a share of the cores so they do not oversubscribe the machine.
    """
    if num_threads is None:
        num_threads = available_cores()
    torch.set_num_threads(num_threads)
    return num_threads


def instantiate_all(section: DictConfig | None, **kwargs) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a config section (callbacks, loggers); skip nulls."""
    if not section:
        return []
    return [instantiate(conf, **kwargs) for conf in section.values() if conf is not None and "_target_" in conf]


def _global_step_of(ckpt_path: str) -> int:
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return int(checkpoint.get("global_step", 0))


class _NoAdvertisement(logging.Filter):
    """Lightning logs a tip for its cloud logger (litlogger) at every trainer start: not ours to print."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_lightning() -> None:
    """What a user reads is rnnlab's and worth reading: no advertisement, no deprecation notice of
    Lightning's own internals (torch's pytree API) that a user cannot act on."""
    rank_zero_logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvertisement) for f in rank_zero_logger.filters):
        rank_zero_logger.addFilter(_NoAdvertisement())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # eval and generate load a checkpoint into a trainer without the run's callbacks, on purpose
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided")
    warnings.filterwarnings("ignore", message=r".*The dirpath has changed from")
    # Short runs (few batches an epoch) log every epoch anyway: nothing for the user to change.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")
    # On a SLURM login node every local run would hint at `srun`; cluster runs go through a launcher.
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system but is not used")


def build(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = (), restart: bool = False):
    """Datamodule, model and trainer for a run config (nothing is trained). ``restart``: the run trains again
    from its start in a directory that has events of an earlier start (a requeued SLURM job)."""
    quiet_lightning()
    datamodule = instantiate(cfg.data)
    model: RecurrentModel = instantiate(cfg.model, task=datamodule.task)
    logger_cfg = cfg.get("logger")
    if (cfg.get("ckpt_path") or restart) and logger_cfg:
        # TensorBoard drops events at or after this step from the interrupted session: no duplicated steps.
        purge_step = _global_step_of(cfg.ckpt_path) if cfg.get("ckpt_path") else 0
        logger_cfg = OmegaConf.merge(
            OmegaConf.create(OmegaConf.to_container(logger_cfg, resolve=True)),  # resolved where it belongs
            {
                key: {"purge_step": purge_step}
                for key, conf in logger_cfg.items()
                if conf is not None and conf._target_.endswith("TensorBoardLogger")
            },
        )
    loggers = instantiate_all(logger_cfg)
    callbacks = [EpochEventsBeforeCheckpoint(), *instantiate_all(cfg.get("callbacks")), *extra_callbacks]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress bar callback then
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if not cfg.trainer.get("enable_model_summary", True):  # a given summary callback would still run
        callbacks = [cb for cb in callbacks if not isinstance(cb, ModelSummary)]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=lightning_plugins()
    )
    return datamodule, model, trainer


def load_run(ckpt_path: str, output_dir: str, trainer_overrides: DictConfig | None = None, logger=None):
    """Datamodule, trained model and trainer of the run that wrote ``ckpt_path`` (its ``config.yaml``), on one
    device (a GPU run on a machine without one: ``trainer.accelerator=cpu``)."""
    run_cfg = load_run_config(run_dir_of_checkpoint(ckpt_path))
    # One process on one device, whatever the run trained on (DDP would re-run this command per rank).
    run_cfg.trainer = OmegaConf.merge(run_cfg.trainer, {"devices": 1, "strategy": "auto"}, trainer_overrides or {})
    check_trainer(run_cfg.trainer)
    budget.apply(run_cfg, keep_model=True)  # RNNLAB_BUDGET=tiny: fewer test batches
    run_cfg.logger, run_cfg.callbacks, run_cfg.ckpt_path = logger, None, None
    run_cfg.paths.output_dir = output_dir
    datamodule, model, trainer = build(run_cfg)
    return datamodule, model, trainer
