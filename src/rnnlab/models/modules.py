"""LightningModules: a recurrent encoder, a readout over its outputs and a linear head.

The task (from the datamodule) picks the module class: ``build_model(task, **model_cfg)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MeanSquaredError, MinMetric
from torchmetrics.classification import MulticlassAccuracy

from rnnlab.cells import build_encoder, set_forget_bias
from rnnlab.data.task import TaskSpec
from rnnlab.data.text import LEVELS
from rnnlab.models.layers import READOUTS, CompiledOrEager, build_input_layer
from rnnlab.registry import Registry


def saved_task(hyper_parameters: dict) -> TaskSpec | None:
    """The task a checkpoint's model was built for, from its ``hyper_parameters`` (None if they do not say).

    Adapter: checkpoints written before 2026-12-03 hold the attributes of the DictConfig that Hydra's
    instantiate made of the TaskSpec; ``DictConfig.__setstate__`` (what unpickling a DictConfig calls)
    rebuilds it. Tested on tests/fixtures/legacy_runs.
    """
    task = hyper_parameters.get("task")
    if isinstance(task, dict) and "_content" in task:
        from omegaconf import DictConfig, OmegaConf

        legacy = DictConfig({})
        legacy.__setstate__(task)
        task = OmegaConf.to_container(legacy)
    return TaskSpec(**task) if isinstance(task, dict) else None


def _input_and_encoder(
    task: TaskSpec,
    cell: str,
    impl: str,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    bidirectional: bool,
    forget_bias: float | None,
) -> tuple[nn.Module, nn.Module]:
    """The layer in front of the encoder (token encodings) and the recurrent encoder itself."""
    input_layer, encoder_input_size = build_input_layer(task)
    encoder = build_encoder(
        impl,
        cell,
        input_size=encoder_input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=dropout,
        bidirectional=bidirectional,
    )
    if forget_bias is not None:
        if cell != "lstm":
            raise ValueError(
                f"model.forget_bias={forget_bias} is for model=lstm only, not model.cell={cell!r}; leave it null"
            )
        set_forget_bias(encoder, float(forget_bias))
    return input_layer, encoder


def _readout_and_head(task: TaskSpec, readout: str, hidden_size: int, bidirectional: bool):
    """The readout over the encoder's outputs (None for a per-step task: the head reads every step's output)
    and the linear head."""
    readout_cls = READOUTS.get(readout)
    dirs_hidden = hidden_size * (2 if bidirectional else 1)
    if task.per_step:  # many-to-many
        return None, nn.Linear(dirs_hidden, task.output_size)
    return readout_cls(bidirectional), nn.Linear(readout_cls.num_features(dirs_hidden, task.seq_len), task.output_size)


def example_input(task: TaskSpec) -> torch.Tensor:
    """One zero sample shaped as the task's inputs: token ids (1, T) or features (1, T, D)."""
    if task.encoding is not None:
        return torch.zeros(1, task.seq_len, dtype=torch.long)
    return torch.zeros(1, task.seq_len, task.input_size)


class RecurrentModel(pl.LightningModule):
    """Encoder + readout + linear head, optimiser and schedule from the config, resumable RNG state.

    Subclasses define the loss and metrics of a task kind. Epoch-level metrics are synced across processes
    (``sync_dist``; torchmetrics objects sync themselves), so under DDP every rank logs and returns the same
    values. ``compile=True`` runs the forward computation through ``torch.compile`` (``CompiledOrEager``).
    """

    summary_metrics: tuple[str, ...]  # each subclass's: what a run's summary shows, most important first

    def __init__(
        self,
        task: TaskSpec,
        cell: str,
        impl: str = "builtin",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        readout: str = "flatten",
        forget_bias: float | None = None,
        readout_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., object] | None = None,
        compile: bool = False,
    ):
        super().__init__()
        if not isinstance(task, TaskSpec):  # Hydra's instantiate hands a dataclass argument over as a DictConfig
            task = TaskSpec(**task)
        # The factories are config objects, not hyperparameters of the weights: keep them out of checkpoints.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "task"], logger=False)
        self.hparams["task"] = vars(task).copy()
        self.task = task
        self.input_layer, self.encoder = _input_and_encoder(
            task, cell, impl, hidden_size, num_layers, dropout, bidirectional, forget_bias
        )
        self.readout, self.head = _readout_and_head(task, readout, hidden_size, bidirectional)
        # Dropout on the features the head reads (a flatten readout gives the head T·H inputs to overfit).
        self.readout_dropout = nn.Dropout(readout_dropout) if readout_dropout > 0 else nn.Identity()
        # Per-step metric updates stay on the device: no NaN scan (a NaN loss stays NaN in the epoch mean instead
        # of being dropped with a warning) and, for train/acc, no label checks (cross-entropy checks the labels).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.optimizer_factory = optimizer or torch.optim.Adam
        self.scheduler_factory = scheduler
        self._compiled = CompiledOrEager(self._predict_with_state, type(self).__name__) if compile else None
        # One sample for Lightning's model summary (its sizes and FLOPs columns); not with torch.compile, where
        # the summary's forward would compile the model once more for a shape training never uses.
        self.example_input_array = None if compile else example_input(task)

    def progress_chart(self) -> tuple[str, list[str]]:
        """(title, tag patterns) of the TensorBoard chart that shows this model's progress, train vs val."""
        return "loss (val/loss)", [r"^val/loss$"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, T, D) -> head outputs: (N, T, O) for a per-step task, else (N, O)."""
        return self.predict_with_state(x)[0]

    def predict_with_state(self, x: torch.Tensor, state=None):
        """Like ``forward`` from an initial encoder state (torch.nn layout); also returns the final state."""
        if self._compiled is not None:
            return self._compiled(x, state)
        return self._predict_with_state(x, state)

    def _predict_with_state(self, x: torch.Tensor, state=None):
        out, state = self.encoder(self.input_layer(x), state)
        if self.readout is None:
            return self.head(self.readout_dropout(out)), state
        return self.head(self.readout_dropout(self.readout(out, state))), state

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Lightning restores weights, optimiser, schedule and loops but not the RNG: dropout after a resume
    # would then differ from an uninterrupted run.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        np.random.set_state(states["numpy"])
        random.setstate(states["python"])

    def _step(self, stage: str, batch) -> torch.Tensor:
        """Loss of one batch of ``stage`` (train | val | test), logging the task's metrics."""
        raise NotImplementedError

    def cross_entropy(self, stage: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits (M, C) against class indices (M,); label smoothing in training only, so
        val/loss and test/loss stay comparable between runs with different smoothing."""
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        return F.cross_entropy(logits, targets, label_smoothing=smoothing)

    def training_step(self, batch, batch_idx):
        loss = self._step("train", batch)
        # train/loss_step every log_every_n_steps and train/loss_epoch, the epoch's mean, kept on the device:
        # one Lightning ``self.log`` call costs about a millisecond on a CPU, as much as a small model's step.
        self.train_loss.update(loss.detach(), weight=len(batch[1]))
        trainer = self._trainer  # None when a step is called by hand
        if trainer is not None and (self.global_step + 1) % trainer.log_every_n_steps == 0:  # Lightning's log steps
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss.compute())  # torchmetrics' compute syncs across ranks
        self.train_loss.reset()

    def validation_step(self, batch, batch_idx):
        self._step("val", batch)

    def test_step(self, batch, batch_idx):
        self._step("test", batch)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class SequenceClassifier(RecurrentModel):
    """Many-to-one classification with cross-entropy.

    Logs train/loss, train/acc, val/loss, val/acc, val/acc_best, test/loss, test/acc.
    """

    summary_metrics = ("val/acc_best", "val/acc", "val/loss", "test/acc", "test/loss")
    declared_metrics = summary_metrics  # every metric a model of this class may put in TensorBoard's HPARAMS

    def progress_chart(self) -> tuple[str, list[str]]:
        return "accuracy (train/acc, val/acc)", [r"^train/acc$", r"^val/acc$"]

    def __init__(self, task: TaskSpec, **kwargs):
        super().__init__(task, **kwargs)
        num_classes = task.output_size
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # a resumed run must remember its best epoch

    def _step(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.cross_entropy(stage, logits, y)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy.update(logits, y)
        if stage != "train":  # train/loss and train/acc are logged once an epoch (see training_step)
            self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
            self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=stage == "val")
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("train/acc", self.train_acc.compute())
        self.train_acc.reset()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's couple of batches is not an epoch
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)


def _detached(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class SequenceRegressor(RecurrentModel):
    """Regression with MSE, many-to-one (y (N, O)) or many-to-many (y (N, T, O)).

    Logs train/loss, val/loss, val/mse, val/mse_ratio (MSE over the trivial predictor's), val/mse_best,
    test/*; with a task tolerance also */within_tol (share of targets predicted within it). For a
    stateful task the final hidden state of each batch, detached, starts the next one (truncated BPTT).
    """

    summary_metrics: tuple[str, ...] = ("val/mse_best", "val/mse", "val/mse_ratio", "test/mse", "test/mse_ratio")
    declared_metrics = (*summary_metrics, "val/within_tol", "test/within_tol")

    def progress_chart(self) -> tuple[str, list[str]]:
        return "error (val/mse_ratio)", [r"^val/mse_ratio$"]

    def __init__(self, task: TaskSpec, **kwargs):
        super().__init__(task, **kwargs)
        if not task.trivial_mse:
            raise ValueError(f"regression task {task} needs a positive trivial_mse")
        if self.hparams.label_smoothing:
            raise ValueError(
                f"model.label_smoothing={self.hparams.label_smoothing} is for classification and language "
                "modelling, not regression; leave it 0"
            )
        self.val_mse, self.test_mse = MeanSquaredError(), MeanSquaredError()
        self.val_mse_best = MinMetric()
        self.val_mse_best.persistent(True)
        if task.tolerance is not None:
            self.val_within, self.test_within = MeanMetric(), MeanMetric()
            self.summary_metrics = self.summary_metrics + ("val/within_tol", "test/within_tol")
        self._carried_state: dict[str, object] = {}  # stage -> state, for stateful tasks only

    def _predict(self, stage: str, x: torch.Tensor) -> torch.Tensor:
        if not self.task.stateful:
            return self(x)
        prediction, state = self.predict_with_state(x, self._carried_state.get(stage))
        self._carried_state[stage] = _detached(state)
        return prediction

    def _reset_state(self, stage: str) -> None:
        self._carried_state.pop(stage, None)

    def on_train_epoch_start(self) -> None:
        self._reset_state("train")

    def on_validation_epoch_start(self) -> None:
        self._reset_state("val")

    def on_test_epoch_start(self) -> None:
        self._reset_state("test")

    def _step(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        prediction = self._predict(stage, x)
        loss = F.mse_loss(prediction, y)
        if stage != "train":
            self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
            mse = getattr(self, f"{stage}_mse")
            mse(prediction, y)
            self.log(f"{stage}/mse", mse, on_epoch=True, prog_bar=stage == "val")
            if self.task.tolerance is not None:
                within = getattr(self, f"{stage}_within")
                within(((prediction - y).abs() <= self.task.tolerance).float())
                self.log(f"{stage}/within_tol", within, on_epoch=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        mse = self.val_mse.compute()
        self.val_mse_best(mse)
        self.log("val/mse_ratio", mse / self.task.trivial_mse, sync_dist=True)
        self.log("val/mse_best", self.val_mse_best.compute(), prog_bar=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.log("test/mse_ratio", self.test_mse.compute() / self.task.trivial_mse, sync_dist=True)


# A language model's per-token metric of its mean cross-entropy (nats), by ``data.level``'s token metric.
TOKEN_METRICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "bpc": lambda loss: loss / math.log(2),  # bits per character
    "ppl": torch.exp,  # perplexity per word
}


def _token_summary(metric: str) -> tuple[str, ...]:
    """A language model's summary metrics for its token metric (bpc or ppl)."""
    return (f"val/{metric}_best", f"val/{metric}", "val/loss", f"test/{metric}", "test/loss")


class LanguageModel(RecurrentModel):
    """Next-token prediction at every step: x (N, T) token indices -> logits (N, T, V), cross-entropy per token.

    Logs */loss (nats per token), */acc (next-token accuracy) and the task's token metric: ``bpc``
    (bits per character, loss / ln 2) or ``ppl`` (perplexity, exp(loss)); val/<metric>_best.
    """

    declared_metrics = tuple(
        dict.fromkeys(name for level in LEVELS.values() for name in _token_summary(level.token_metric))
    )

    def __init__(self, task: TaskSpec, **kwargs):
        super().__init__(task, **kwargs)
        if self.hparams.bidirectional:
            raise ValueError("model.bidirectional=true reads the next tokens; a language model must be unidirectional")
        if task.token_metric not in TOKEN_METRICS:
            raise ValueError(
                f"task token_metric={task.token_metric!r} is not allowed; allowed: {', '.join(TOKEN_METRICS)}"
            )
        self.summary_metrics = _token_summary(task.token_metric)
        self.val_token_loss, self.test_token_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(task.output_size, average="micro")
        self.test_acc = MulticlassAccuracy(task.output_size, average="micro")
        self.val_best = MinMetric()
        self.val_best.persistent(True)

    def token_metric(self, loss: torch.Tensor) -> torch.Tensor:
        """The task's per-token metric of a mean cross-entropy in nats (``TOKEN_METRICS``)."""
        metric = self.task.token_metric
        assert metric is not None  # the constructor refuses a task without one
        return TOKEN_METRICS[metric](loss)

    def progress_chart(self) -> tuple[str, list[str]]:
        metric = self.task.token_metric
        return f"{metric} (val/{metric})", [rf"^val/{metric}$"]

    def _step(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.cross_entropy(stage, logits.flatten(0, 1), y.flatten())
        if stage != "train":
            self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
            getattr(self, f"{stage}_token_loss").update(loss, weight=y.numel())
            accuracy = getattr(self, f"{stage}_acc")
            accuracy(logits.flatten(0, 1), y.flatten())
            self.log(f"{stage}/acc", accuracy, on_epoch=True)
        return loss

    def _log_token_metric(self, stage: str) -> torch.Tensor:
        token_loss = getattr(self, f"{stage}_token_loss")
        value = self.token_metric(token_loss.compute())
        token_loss.reset()
        self.log(f"{stage}/{self.task.token_metric}", value, prog_bar=stage == "val", sync_dist=True)
        return value

    def on_validation_epoch_end(self) -> None:
        value = self._log_token_metric("val")
        if not self.trainer.sanity_checking:
            self.val_best(value)
            self.log(f"val/{self.task.token_metric}_best", self.val_best.compute(), prog_bar=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_token_metric("test")


MODELS: Registry[type[RecurrentModel]] = Registry("task kind")


MODELS.register("classification")(SequenceClassifier)
MODELS.register("regression")(SequenceRegressor)
MODELS.register("language_model")(LanguageModel)


def build_model(task: TaskSpec, **kwargs) -> RecurrentModel:
    """The LightningModule for ``task.kind`` with the model config's arguments."""
    return MODELS.get(task.kind)(task, **kwargs)
