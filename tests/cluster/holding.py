"""A test-only callback (``+callbacks.hold._target_=holding.HoldOneRun``, tests/cluster on PYTHONPATH) that holds
ONE run of a sweep inside Lightning's fit so a test can ``scancel`` its SLURM job there, mid-trial.

Where ``RNNLAB_TEST_PAUSE`` names a file, the first run to reach the end of its first training epoch claims it
(``<file>.claim``, created exclusively: any later run goes straight through), writes its SLURM job id into the
file and waits while the file exists, two minutes at most; the job's SIGTERM ends the wait."""

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class HoldOneRun(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        marker = os.environ.get("RNNLAB_TEST_PAUSE")
        if not marker or trainer.current_epoch != 0:
            return
        try:
            os.close(os.open(f"{marker}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another run is (or was) the held one
        Path(f"{marker}.tmp").write_text(os.environ.get("SLURM_JOB_ID", ""))
        os.replace(f"{marker}.tmp", marker)
        deadline = time.monotonic() + 120
        while Path(marker).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
