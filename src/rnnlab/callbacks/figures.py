"""TensorBoard figures: series and scatter plots, and the callback drawing a regression task's predictions
and generated continuations."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from rnnlab.models import SequenceRegressor


def _new_figure(title: str):
    # A bare Figure (no pyplot): no GUI backend, nothing kept alive in pyplot's registry.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    return figure, axes


def series_figure(title: str, **series: torch.Tensor):
    """Line plot of 1-D series, one per keyword (the label)."""
    figure, axes = _new_figure(title)
    for label, values in series.items():
        axes.plot(values.detach().cpu().flatten().numpy(), label=label, linewidth=1)
    axes.set_xlabel("time step")
    axes.legend(loc="upper right")
    return figure


def scatter_figure(title: str, predicted: torch.Tensor, target: torch.Tensor):
    figure, axes = _new_figure(title)
    target, predicted = target.detach().cpu().flatten().numpy(), predicted.detach().cpu().flatten().numpy()
    axes.scatter(target, predicted, s=6)
    low, high = float(min(target.min(), predicted.min())), float(max(target.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="gray", linewidth=1)
    axes.set_xlabel("target")
    axes.set_ylabel("predicted")
    return figure


def log_figure(trainer: pl.Trainer, tag: str, figure, step: int | None = None) -> None:
    """``figure`` into every TensorBoard logger at ``step`` (default: the trainer's global step)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(
                tag, figure, global_step=trainer.global_step if step is None else step, close=False
            )


class PredictionFigures(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, for regression tasks:

    - ``figures/prediction``: predicted against target series for the first validation sequence
      (up to ``max_steps`` steps), or predicted against target values of the first batch (many-to-one);
    - ``figures/generation`` (next-step tasks): a continuation of ``generate_steps`` steps generated from
      the first ``seed_len`` points of the validation series, against the true one.
    """

    def __init__(self, every_n_epochs: int = 1, max_steps: int = 300, seed_len: int = 100, generate_steps: int = 200):
        self.every_n_epochs, self.max_steps = every_n_epochs, max_steps
        self.seed_len, self.generate_steps = seed_len, generate_steps

    def _due(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        return (
            self.every_n_epochs > 0
            and trainer.is_global_zero  # only rank 0 writes TensorBoard; other ranks need not draw
            and not trainer.sanity_checking
            and isinstance(pl_module, SequenceRegressor)
            and trainer.current_epoch % self.every_n_epochs == 0
        )

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx != 0 or not self._due(trainer, pl_module):
            return
        x, y = batch
        if pl_module.task.per_step:
            predicted = pl_module(x[:1, : self.max_steps])
            figure = series_figure(
                "validation: predicted vs target", target=y[0, : self.max_steps, 0], predicted=predicted[0, :, 0]
            )
        else:
            figure = scatter_figure("validation: predicted vs target", pl_module(x), y)
        log_figure(trainer, "figures/prediction", figure)

    def on_validation_epoch_end(self, trainer, pl_module):
        datamodule = trainer.datamodule
        if (
            not self._due(trainer, pl_module)
            or not pl_module.task.generative
            or not hasattr(datamodule, "continuation")
        ):
            return
        from rnnlab.models.generation import generate

        seed, truth = datamodule.continuation("val", self.seed_len, self.generate_steps)
        generated = generate(pl_module, seed, self.generate_steps)
        figure = series_figure(f"generated from {self.seed_len} seed steps", true=truth, generated=generated)
        log_figure(trainer, "figures/generation", figure)
