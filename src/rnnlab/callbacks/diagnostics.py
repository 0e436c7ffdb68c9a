"""Vanishing-gradient diagnostics: how much of the loss gradient reaches each hidden state.

``GradientDiagnostics`` records, on a few training batches per epoch, ‖∂L/∂h_t‖ for t = 1..T: the norm
of the loss gradient with respect to the top layer's hidden state h_t (over the hidden units, averaged
over the batch). On those batches a forward hook on the encoder replaces its output by the same
computation run one step at a time through the encoder's own call convention
(``out_t, state = encoder(x[:, t:t+1], state)``), and a gradient hook on each step's output h_t records
the gradient. Nothing touches cell internals, so it works for every cell and implementation following
torch.nn's ``out, state = encoder(x, state0)`` (builtin and custom); a fused whole-sequence kernel keeps
its intermediate states to itself, hence the unrolling.

Per diagnosed epoch it writes

- ``diagnostics/grad_by_step`` (when training ends): a figure of ‖∂L/∂h_t‖ against t (log scale), one
  curve per diagnosed epoch, into TensorBoard;
- ``grad_norm/<group>`` scalars (``encoder``, ``readout``, ``head``, ``total``): the gradient norm of each
  parameter group on the diagnosed batches, before any clipping;
- ``grad_norm/first_over_last``: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖, the vanishing in one number;
- ``grad_by_step.json`` in the run directory: every epoch's per-step norms (what ``rnnlab.report`` plots).

The gradient is the total one: through the readout and through all later steps. With
``model.readout=last`` only h_T feeds the loss directly, so ∂L/∂h_t for earlier t arrives only through
the recurrence — the textbook vanishing-gradient picture. With ``flatten``/``mean`` every step also has a
direct path to the loss, which keeps early-step gradients up whatever the cell.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn

from rnnlab.callbacks.figures import log_figure

GRADIENT_FILE = "grad_by_step.json"
MAX_CURVES = 6  # epochs drawn in the figure


def _is_bidirectional(encoder: nn.Module) -> bool:
    return bool(getattr(encoder, "bidirectional", False))


def unrolled(encoder: nn.Module, x: torch.Tensor, state=None, on_step=None):
    """``encoder(x, state)`` one time step at a time through the encoder's own call convention.

    Each step's top-layer hidden state h_t (N, dirs·H) is one tensor that both the output sequence and the
    next step's state are built from, so a hook on it sees the total gradient ∂L/∂h_t: through the
    readout and through every later step. ``on_step(t, h_t)`` is called for each step. Unidirectional
    encoders only (a reverse direction reads the sequence backwards).
    """
    steps = []
    for t in range(x.shape[1]):
        out_t, state = encoder(x[:, t : t + 1], state)
        h_t = out_t[:, 0]
        if on_step is not None:
            on_step(t, h_t)
        # The top layer's h in the state is h_t's value; make it h_t itself so the recurrence goes through it.
        h_n = state[0] if isinstance(state, tuple) else state
        h_n = torch.cat([h_n[:-1], h_t.unsqueeze(0)], dim=0)
        state = (h_n, *state[1:]) if isinstance(state, tuple) else h_n
        steps.append(h_t)
    return torch.stack(steps, dim=1), state


class StepGradients:
    """Context manager: while active, each forward of ``encoder`` is replaced by the same computation
    unrolled step by step (``unrolled``) with a gradient hook on every h_t; when the backward pass is done,
    ``norms`` holds one tensor (T,) per forward: ‖∂L/∂h_t‖ over the hidden units, averaged over the batch.

        with StepGradients(model.encoder) as capture:
            loss_fn(model(x), y).backward()
        capture.norms[0]  # tensor (T,)

    A bidirectional encoder cannot be unrolled forwards; for it the hook sits on its output sequence
    (∂L/∂out_t: the direct paths from each step's output to the loss only).
    """

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.norms: list[torch.Tensor] = []
        self._handle = None
        self._inside = False

    def _on_forward(self, module, inputs, output):
        if self._inside or not torch.is_grad_enabled():
            return None
        if _is_bidirectional(module):
            out = output[0]
            if out.requires_grad:
                norms = torch.zeros(out.shape[1])
                self.norms.append(norms)

                def record(grad: torch.Tensor) -> None:  # returns None: the gradient flows on unchanged
                    norms.copy_(self._reduce(grad))

                out.register_hook(record)
            return None
        x, state = inputs[0], (inputs[1] if len(inputs) > 1 else None)
        norms = torch.zeros(x.shape[1])
        self.norms.append(norms)

        def hook_step(t: int, h_t: torch.Tensor) -> None:
            if h_t.requires_grad:
                h_t.register_hook(lambda grad: norms.__setitem__(t, self._reduce(grad)))

        self._inside = True
        try:
            return unrolled(module, x, state, hook_step)
        finally:
            self._inside = False

    @staticmethod
    def _reduce(grad: torch.Tensor) -> torch.Tensor:
        """(N, ..., H) -> the norm over hidden units, averaged over the batch (one value per step)."""
        return grad.detach().float().norm(dim=-1).mean(dim=0).cpu()

    def __enter__(self) -> StepGradients:
        self._handle = self.encoder.register_forward_hook(self._on_forward)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def parameter_groups(module: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters of each top-level child that has any (encoder, readout, head, ...)."""
    groups = {}
    for name, child in module.named_children():
        params = [p for p in child.parameters() if p.requires_grad]
        if params:
            groups[name] = params
    return groups


def group_grad_norms(module: nn.Module) -> dict[str, float]:
    """L2 norm of the current gradients of each parameter group, plus ``total`` over all of them."""
    norms, total_sq = {}, 0.0
    for name, params in parameter_groups(module).items():
        grads = [p.grad.detach().float() for p in params if p.grad is not None]
        if not grads:
            continue
        sq = float(sum((g * g).sum() for g in grads))
        norms[name], total_sq = math.sqrt(sq), total_sq + sq
    if norms:
        norms["total"] = math.sqrt(total_sq)
    return norms


def grad_by_step_figure(norms_by_label: dict[str, list[float]], title: str):
    """‖∂L/∂h_t‖ against t, one line per label (the first solid, the others dotted), log scale; no pyplot."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.add_subplot()
    for i, (label, norms) in enumerate(norms_by_label.items()):
        axes.plot(
            range(1, len(norms) + 1),
            norms,
            marker="." if i == 0 else None,
            linestyle="-" if i == 0 else ":",
            label=label,
        )
    axes.set_yscale("log")
    axes.set_xlabel("time step t")
    axes.set_ylabel("‖∂L/∂h_t‖ (batch mean)")
    axes.set_title(title)
    axes.legend(loc="best")
    return figure


def run_dir_of(trainer: pl.Trainer) -> Path:
    """Where the run's TensorBoard events go (the run directory with this app's logger config)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return Path(logger.log_dir)
    return Path(trainer.default_root_dir)


class GradientDiagnostics(pl.Callback):
    """Per-step hidden-state gradient norms and per-group parameter gradient norms on the first
    ``batches_per_epoch`` training batches of every ``every_n_epochs``-th epoch and of the last one
    (0 turns it off).

    Off batches cost nothing: the hook is installed only for the diagnosed batches. The figure, which
    costs more to draw (~0.15 s) than the diagnosed batches to run, is drawn once, when training ends.
    """

    def __init__(self, batches_per_epoch: int = 2, every_n_epochs: int = 5):
        self.batches_per_epoch, self.every_n_epochs = batches_per_epoch, every_n_epochs
        self._capture: StepGradients | None = None
        self._epoch_norms: list[torch.Tensor] = []
        self._group_norms: list[dict[str, float]] = []

    def _due(self, trainer: pl.Trainer, batch_idx: int) -> bool:
        return (
            self.batches_per_epoch > 0
            and self.every_n_epochs > 0
            and (trainer.current_epoch % self.every_n_epochs == 0 or trainer.current_epoch == trainer.max_epochs - 1)
            and batch_idx < self.batches_per_epoch
        )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_norms, self._group_norms = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._due(trainer, batch_idx) and hasattr(pl_module, "encoder"):
            self._capture = StepGradients(pl_module.encoder).__enter__()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._capture is not None:
            self._group_norms.append(group_grad_norms(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._capture is None:
            return
        self._capture.close()
        self._epoch_norms.extend(self._capture.norms)
        self._capture = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._epoch_norms:
            return
        lengths = {len(n) for n in self._epoch_norms}
        if len(lengths) != 1:  # variable-length batches: keep the common prefix
            shortest = min(lengths)
            self._epoch_norms = [n[:shortest] for n in self._epoch_norms]
        norms = torch.stack(self._epoch_norms).mean(dim=0)
        epoch = trainer.current_epoch
        metrics = {}
        if self._group_norms:
            for name in self._group_norms[0]:
                values = [g[name] for g in self._group_norms if name in g]
                metrics[f"grad_norm/{name}"] = sum(values) / len(values)
        if norms[-1] > 0:
            metrics["grad_norm/first_over_last"] = float(norms[0] / norms[-1])
        # At the epoch's last step, as Lightning logs epoch metrics: a resumed run (whose TensorBoard events
        # are purged from the checkpoint's global step on) keeps them.
        step = max(trainer.global_step - 1, 0)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        if trainer.is_global_zero:
            self._save(trainer, epoch, norms)

    def _save(self, trainer: pl.Trainer, epoch: int, norms: torch.Tensor) -> None:
        run_dir = run_dir_of(trainer)
        path = run_dir / GRADIENT_FILE
        record = json.loads(path.read_text()) if path.is_file() else {"epochs": {}}
        record["epochs"][str(epoch)] = [float(v) for v in norms]
        record["batches_per_epoch"] = self.batches_per_epoch
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))

    def on_train_end(self, trainer, pl_module) -> None:
        """The figure, once: one curve per diagnosed epoch (up to ``MAX_CURVES``), the latest solid."""
        if not trainer.is_global_zero:
            return
        by_epoch = read_grad_by_step(run_dir_of(trainer))
        if not by_epoch:
            return
        epochs = sorted(by_epoch)
        if len(epochs) > MAX_CURVES:  # evenly spaced, always the first and the last
            epochs = sorted({epochs[round(i * (len(epochs) - 1) / (MAX_CURVES - 1))] for i in range(MAX_CURVES)})
        cell = pl_module.hparams.get("cell", "model")
        curves = {f"{cell}, epoch {e}": by_epoch[e] for e in reversed(epochs)}
        figure = grad_by_step_figure(curves, "loss gradient reaching each hidden state")
        log_figure(trainer, "diagnostics/grad_by_step", figure, max(trainer.global_step - 1, 0))


def read_grad_by_step(run_dir: str | Path) -> dict[int, list[float]]:
    """The per-step norms a run recorded, {epoch: [‖∂L/∂h_1‖, ..., ‖∂L/∂h_T‖]}; {} if none."""
    path = Path(run_dir) / GRADIENT_FILE
    if not path.is_file():
        return {}
    return {int(epoch): values for epoch, values in json.loads(path.read_text())["epochs"].items()}
