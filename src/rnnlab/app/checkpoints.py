"""The checkpoints a run keeps: which callback holds the best, the paths it reports, and the check that they
were written."""

from __future__ import annotations

import errno
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


def best_checkpoint_callback(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The callback keeping the best checkpoint (the one with a monitored metric; last.ckpt's has none)."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)


def checkpoint_paths(trainer: pl.Trainer) -> dict[str, str | None]:
    """The run's best and last checkpoints (None where the run keeps none)."""
    paths: dict[str, str | None] = {"best": None, "last": None}
    for callback in trainer.checkpoint_callbacks:
        if not callback.best_model_path:
            continue
        # conf/callbacks/model_checkpoint.yaml: one callback keeps the best epoch (by the monitored metric),
        # one with no metric keeps the latest (last.ckpt)
        paths["best" if callback.monitor else "last"] = callback.best_model_path
    return paths


class CheckpointsWritten(pl.Callback):
    """Stops a run whose checkpoints were not written, with the reason.

    Lightning drops a PermissionError of a checkpoint write (``lightning_fabric``'s ``_atomic_save`` re-raises
    only a cross-device one), so a run whose checkpoint folder became unwritable would train on without
    them. Each epoch (and at the end of fit) the files its checkpoint callbacks say they wrote must exist.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer)

    @staticmethod
    def check(trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:  # rank 0 writes the checkpoints
            return
        for callback in trainer.checkpoint_callbacks:  # any Checkpoint callback: the paths it reports, if any
            reported = {getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")}
            folder = getattr(callback, "dirpath", None)
            for path in reported - {"", None}:
                if folder and Path(path).parent != Path(folder):
                    continue  # restored from a checkpoint of a run that has moved since: not written by this run
                if not Path(path).is_file():
                    raise not_written(Path(path))


def not_written(path: Path) -> OSError:
    """The error for a checkpoint that is not there: why its folder takes no file, where that can be seen."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        return OSError(error.errno, f"checkpoint {path} was not written: {path.parent}: {error.strerror}")
    return OSError(errno.EIO, f"checkpoint {path} was not written")
