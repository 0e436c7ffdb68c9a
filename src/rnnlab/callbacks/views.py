"""TensorBoard views: the custom-scalars layout (train and val curves of every run on one chart), the
model's parameter count, and the confusion matrix of a classification test."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from rnnlab.callbacks.figures import log_figure
from rnnlab.models import SequenceClassifier

LAYOUT_CATEGORY = "compare cells: train vs val"


def custom_scalars_layout(progress_chart: tuple[str, list[str]]) -> dict:
    """Charts for TensorBoard's Custom Scalars tab. Tags are regular expressions; a Multiline chart draws
    every run's matching tags, so each chart shows train and val of every cell (the lab's combined charts).
    ``progress_chart`` (title, tag patterns) is the model's own measure of progress (``progress_chart``).
    """
    charts = {"loss (train/loss_epoch, val/loss)": ["Multiline", [r"^train/loss_epoch$", r"^val/loss$"]]}
    title, patterns = progress_chart
    charts[title] = ["Multiline", list(patterns)]
    charts["gradient norms (grad_norm/*)"] = ["Multiline", [r"^grad_norm/(encoder|readout|head)$"]]
    charts["vanishing: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖"] = ["Multiline", [r"^grad_norm/first_over_last$"]]
    return {LAYOUT_CATEGORY: charts}


def log_layout(loggers: list[Logger], progress_chart: tuple[str, list[str]]) -> None:
    """Write the custom-scalars layout into every TensorBoard logger's events (once, at fit start)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(custom_scalars_layout(progress_chart))
            logger.experiment.flush()


def confusion_figure(matrix, title: str = "test confusion matrix"):
    """A counts matrix (true class rows, predicted class columns) as a bare matplotlib Figure."""
    from matplotlib.figure import Figure

    counts = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else matrix
    classes = counts.shape[0]
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes)
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(classes):
        for j in range(classes):
            axes.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if counts[i, j] > threshold else "black",
            )
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    return figure


class TensorBoardViews(pl.Callback):
    """When a new run starts training: the custom-scalars layout and the scalar ``model/num_parameters``
    (read by the report), at step 0.
    At the end of testing (classification with one label per sequence): ``figures/confusion_matrix``."""

    def __init__(self, confusion_matrix: bool = True):
        self.confusion_matrix = confusion_matrix
        self._counts: torch.Tensor | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step > 0:  # a resumed run: its events already hold both (step 0 is never purged)
            return
        log_layout(trainer.loggers, pl_module.progress_chart())
        for logger in trainer.loggers:
            logger.log_metrics({"model/num_parameters": float(pl_module.num_parameters)}, step=trainer.global_step)

    def _wanted(self, pl_module) -> bool:
        return self.confusion_matrix and isinstance(pl_module, SequenceClassifier) and not pl_module.task.per_step

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._counts = None

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._wanted(pl_module):
            return
        x, y = batch
        classes = pl_module.task.output_size
        predicted = pl_module(x).argmax(dim=-1)
        counts = torch.bincount(y.flatten() * classes + predicted.flatten(), minlength=classes * classes)
        counts = counts.reshape(classes, classes).cpu()
        self._counts = counts if self._counts is None else self._counts + counts

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self._counts is None:
            return
        # Each DDP rank counted its own shard of the test set: the matrix is their sum (every rank takes part).
        self._counts = trainer.strategy.reduce(self._counts.to(pl_module.device), reduce_op="sum").cpu()
        if not trainer.is_global_zero:
            return
        accuracy = float(self._counts.diag().sum() / self._counts.sum())
        log_figure(
            trainer,
            "figures/confusion_matrix",
            confusion_figure(self._counts, f"test confusion matrix (accuracy {accuracy:.3f})"),
        )
