"""Every epoch a checkpoint holds is in TensorBoard: the epoch's metrics are written before its checkpoint.

Lightning saves a run's checkpoints in the epoch-end hooks of its checkpoint callbacks, and only afterwards
hands the epoch's training metrics (``train/loss_epoch``, ``train/acc``: logged by the model's own
``on_train_epoch_end``) to the loggers. A run killed between the two (kill -9, a lost machine) left a
checkpoint saying the epoch was done and no point of that epoch in TensorBoard; its resume starts at the
next epoch, so the point was lost for good.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class EpochEventsBeforeCheckpoint(pl.Callback):
    """Hands the epoch's training metrics to the loggers, and flushes them, as a checkpoint is saved (Lightning
    asks every callback's ``on_save_checkpoint`` before it writes the file). Lightning's own hand-over after
    the epoch-end hooks then finds nothing left to log: each point is written once, at the step Lightning
    would use.

    The one use of Lightning's private loop state in this package besides ``rnnlab.app.launch``
    (pytorch-lightning < 3 in pyproject): Lightning has no public way to log the epoch's metrics earlier;
    tests/faults/test_faults_resume.py kills a run right after its checkpoint and fails if a point is lost.
    """

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        connector = trainer._logger_connector
        if trainer.training and connector._first_loop_iter is None:  # at an epoch end (not mid-epoch)
            epoch_loop = trainer.fit_loop.epoch_loop
            # What Lightning's fit loop does after the epoch-end hooks, done now. The progress bar and callback
            # metrics are read first: they are computed from the results that this resets.
            _ = trainer.progress_bar_metrics, trainer.callback_metrics
            epoch_loop._batches_that_stepped -= 1  # epoch metrics go at the epoch's last step, as Lightning's do
            try:
                connector.update_train_epoch_metrics()
            finally:
                epoch_loop._batches_that_stepped += 1
        for logger in trainer.loggers:
            logger.save()  # TensorBoard: flush the event file
