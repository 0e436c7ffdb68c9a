"""Holds a run at the start of its second epoch (its first checkpoint written) while RNNLAB_TEST_PAUSE names a
file: tests/doc_fill.py interrupts it there to make a run that a documented resume command can continue."""

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class PauseAfterFirstEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        marker = os.environ.get("RNNLAB_TEST_PAUSE")
        if marker and trainer.current_epoch == 1:
            Path(marker).touch()
            time.sleep(120)  # a signal ends it
