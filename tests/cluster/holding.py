"""A test-only callback (``+callbacks.hold._target_=holding.HoldOneRun``, tests/cluster on PYTHONPATH) that holds
ONE run of a sweep inside Lightning's fit so a test can ``scancel`` or ``scontrol requeue`` its SLURM job there,
mid-trial.

Where ``RNNLAB_TEST_PAUSE`` names a file, the first run to start its training epoch ``epoch``
(``+callbacks.hold.epoch=1``: after its first epoch and its checkpoints) claims it (``<file>.claim``, created
exclusively: any later run, and the same run started again, goes straight through), writes its SLURM job id into
the file and waits while the file exists, two minutes at most; the SIGTERM that SLURM sends the job ends the wait
(Lightning stops the run at its next batch)."""

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class HoldOneRun(pl.Callback):
    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        marker = os.environ.get("RNNLAB_TEST_PAUSE")
        if not marker or trainer.current_epoch != self.epoch:
            return
        try:
            os.close(os.open(f"{marker}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another run is (or was) the held one
        Path(f"{marker}.tmp").write_text(os.environ.get("SLURM_JOB_ID", ""))
        os.replace(f"{marker}.tmp", marker)
        deadline = time.monotonic() + 120
        while Path(marker).exists() and not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)
