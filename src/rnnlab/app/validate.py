"""Early validation: the values users most often get wrong, checked before anything is built or written.

Light at import (no torch): the Hydra callback runs in the entry point's process before composition ends.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnlab.app.rundirs import run_dir_of_checkpoint
from rnnlab.devices import GPU_ACCELERATORS, gpu_available
from rnnlab.errors import ConfigError, check_number, check_one_of

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


TEST_CHECKPOINTS = ("best", "last")  # what train.py tests after fitting (conf/train.yaml test_ckpt)


def validate(cfg: DictConfig) -> None:
    """Check the values users most often get wrong, before anything is built or written."""
    from rnnlab.cells import CELLS, ENCODERS
    from rnnlab.models import READOUTS

    model = cfg.model
    check_one_of("model.cell", model.cell, CELLS)
    check_one_of("model.impl", model.impl, ENCODERS.names())
    check_one_of("model.readout", model.readout, READOUTS.names())
    check_number("model.hidden_size", model.hidden_size, integer=True, low=0)
    check_number("model.num_layers", model.num_layers, integer=True, low=0)
    check_number("model.dropout", model.dropout, low=0, low_inclusive=True, high=1)
    check_number("model.readout_dropout", model.get("readout_dropout", 0.0), low=0, low_inclusive=True, high=1)
    check_number("model.label_smoothing", model.get("label_smoothing", 0.0), low=0, low_inclusive=True, high=1)
    check_number("model.optimizer.lr", model.optimizer.lr, low=0)
    check_number("model.optimizer.weight_decay", model.optimizer.get("weight_decay", 0.0), low=0, low_inclusive=True)
    check_number("data.batch_size", cfg.data.batch_size, integer=True, low=0)
    check_number("trainer.max_epochs", cfg.trainer.max_epochs, integer=True, low=0)
    check_one_of("test_ckpt", cfg.get("test_ckpt", "best"), TEST_CHECKPOINTS)
    check_trainer(cfg.trainer)


def check_trainer(trainer: DictConfig) -> None:
    """One-line errors for a trainer config that Lightning would reject with a traceback (or worse, later)."""
    check_one_of("trainer.precision", str(trainer.get("precision", 32)), PRECISIONS)
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in GPU_ACCELERATORS and not gpu_available(accelerator):
        import torch

        raise ConfigError(
            f"trainer.accelerator={accelerator!r} needs a GPU, and none is visible here (torch {torch.__version__}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
            "use trainer=cpu, trainer=default (any device) or trainer=ddp_sim"
        )


class ValidateConfig(Callback):
    """Hydra callback: validate before Hydra creates the run directory, so a rejected run writes nothing.

    Hydra turns exceptions raised in callbacks into warnings, hence the explicit exit.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            for key in ("ckpt_path", "ckpt"):  # train/eval, generate
                if config.get(key):
                    run_dir_of_checkpoint(config[key])
            if config.get("model") is not None:
                validate(config)
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None
