"""The checkpoints a run keeps: which callback holds the best, the paths it reports, and the check that they
were written."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from rnnlab.app.setup import hold_for_test
from rnnlab.runs.signals import signals_deferred


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


class StepCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, whose saves at a step are one step with the run's other StepCheckpoints':
    Ctrl-C and SIGTERM arriving while any of them writes take effect once all have written.

    Lightning calls the checkpoint callbacks one after another. A signal between the best's save (which deletes
    the previous best) and last.ckpt's would leave a last.ckpt naming a deleted best, and the run could not be
    continued from it. The first StepCheckpoint of the trainer defers the signals; the last one ends the deferral.
    """

    _deferral: contextlib.ExitStack | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self._one_step(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self._one_step(trainer):
            super().on_validation_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_step(trainer)
        super().on_exception(trainer, pl_module, exception)

    @contextlib.contextmanager
    def _one_step(self, trainer: pl.Trainer) -> Iterator[None]:
        group = [callback for callback in trainer.checkpoint_callbacks if isinstance(callback, StepCheckpoint)]
        if self is group[0] and self._deferral is None:
            self._deferral = contextlib.ExitStack()
            self._deferral.enter_context(signals_deferred())
        elif self is group[-1]:
            hold_for_test("checkpoints")
        try:
            yield
        except BaseException:
            self._end_step(trainer)  # the step ends with the error; a signal it deferred takes effect after it
            raise
        if self is group[-1]:
            self._end_step(trainer)

    @staticmethod
    def _end_step(trainer: pl.Trainer) -> None:
        """Ends the step's deferral (kept by the trainer's first StepCheckpoint): a signal deferred is raised now."""
        first: Any = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, StepCheckpoint)), None)
        deferral, first._deferral = first._deferral, None
        if deferral is not None:
            deferral.close()


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
