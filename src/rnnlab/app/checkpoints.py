"""The checkpoints a run keeps: which callback holds the best, the paths it reports, and the check that they
were written."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

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
    A kill -9 cannot be deferred: so a file the step replaces is deleted only once every save of the step is
    written. Killed between the saves, the run keeps the previous best that last.ckpt names; the resume trains
    that epoch again and writes its best over the one left from the kill (``enable_version_counter: false``).
    """

    _deferral: contextlib.ExitStack | None = None
    _removals: list[str] | None = None  # files the open step replaced, deleted when it ends (first callback's)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self._one_step(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self._one_step(trainer):
            super().on_validation_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_step(trainer)
        super().on_exception(trainer, pl_module, exception)

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        first = _first_step_checkpoint(trainer)
        if first._removals is None:  # no step open (a save outside the epoch hooks): as Lightning does
            super()._remove_checkpoint(trainer, filepath)
        else:
            first._removals.append(filepath)

    @contextlib.contextmanager
    def _one_step(self, trainer: pl.Trainer) -> Iterator[None]:
        group = _step_checkpoints(trainer)
        if self is group[0] and self._deferral is None:
            self._deferral = contextlib.ExitStack()
            self._deferral.enter_context(signals_deferred())
            self._removals = []
        elif self is group[-1]:
            hold_for_test("checkpoints")
        try:
            yield
        except BaseException:
            # the step ends with the error, its replaced files kept (a save may be missing: the last.ckpt on disk
            # may name them); a signal it deferred takes effect after it
            self._end_step(trainer, written=False)
            raise
        if self is group[-1]:
            self._end_step(trainer, written=True)

    @staticmethod
    def _end_step(trainer: pl.Trainer, written: bool = False) -> None:
        """Ends the step (kept by the trainer's first StepCheckpoint): once all its saves are ``written``, the files
        they replaced are deleted; then a signal deferred is raised."""
        first = _first_step_checkpoint(trainer)
        removals, first._removals = first._removals or [], None
        deferral, first._deferral = first._deferral, None
        try:
            for filepath in removals if written else []:
                ModelCheckpoint._remove_checkpoint(first, trainer, filepath)
        finally:
            if deferral is not None:
                deferral.close()


def _step_checkpoints(trainer: pl.Trainer) -> list[StepCheckpoint]:
    """The trainer's StepCheckpoints in the order Lightning calls them."""
    return [callback for callback in trainer.checkpoint_callbacks if isinstance(callback, StepCheckpoint)]


def _first_step_checkpoint(trainer: pl.Trainer) -> StepCheckpoint:
    """The trainer's first StepCheckpoint: it keeps the step's deferral and the files to delete at its end."""
    return _step_checkpoints(trainer)[0]


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
