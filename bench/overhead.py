"""Framework overhead: an MNIST-1D training epoch through rnnlab against a plain PyTorch loop.

rnnlab: ``rnnlab.app.train.train`` on the default config (Lightning Trainer, TensorBoard logger, the
default callbacks: checkpoints, learning-rate monitor, gradient diagnostics, views), with the
optimiser the plain loop uses (Adam, constant lr) so both do the same arithmetic; no progress bar.
Plain: the course lab's loop: a ``DataLoader`` over a ``TensorDataset``, batch 100, shuffled, Adam,
nothing logged, validation accuracy computed after each epoch. Same model class, data split and
batch size (its own copy of the model, optimiser and shuffling generator).

The two run interleaved, epoch by epoch, in one process: at the start of every rnnlab epoch a callback
runs one plain epoch. On a shared machine the speed available to a process drifts over seconds, so
timing the two loops minutes apart (even alternately) lets that drift into the ratio; adjacent epochs
see nearly the same machine. rnnlab's epoch is timed from the end of that callback to its next call, so
it includes validation, logging, checkpointing and, every 5th epoch, the gradient diagnostics. The
first pair (warm-up) and rnnlab's last epoch (whose interval would run into what is done once when
training ends: the gradient figure) are left out: with E epochs, E - 2 pairs are timed. The ratio is
the sum of rnnlab's timed epochs over the sum of the paired plain epochs (periodic work counts at its
rate); the spread of the per-pair ratios shows how noisy the run was.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.app.compose import compose_run_config

COLUMNS = ("model", "rnnlab s/epoch", "plain s/epoch", "rnnlab / plain", "pair ratios p25–p75")

# Same arithmetic in both loops: Adam at a constant lr.
SAME_OPTIMISER = ["model/optimizer=adam", "~model/scheduler"]
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


class PlainLoop:
    """The course lab's training loop on the model and data of an rnnlab config; ``epoch()`` runs one epoch."""

    def __init__(self, overrides: list[str], workdir: Path, data_dir: Path):
        cfg = compose_run_config([*SAME_OPTIMISER, *overrides], output_dir=workdir / "plain", data_dir=data_dir)
        torch.manual_seed(cfg.seed)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        self.model = instantiate(cfg.model, task=datamodule.task)
        train_split, self.val_split = datamodule.splits["train"], datamodule.splits["val"]
        # Its own generator: the plain loop's shuffling leaves rnnlab's random stream alone.
        self.loader = DataLoader(
            TensorDataset(train_split.x, train_split.y),
            batch_size=cfg.data.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.model.optimizer.lr)

    def epoch(self) -> float:
        """One training epoch, then the validation accuracy."""
        self.model.train()
        for x, y in self.loader:
            self.optimizer.zero_grad()
            F.cross_entropy(self.model(x), y).backward()
            self.optimizer.step()
        self.model.eval()
        with torch.no_grad():
            return (self.model(self.val_split.x).argmax(-1) == self.val_split.y).float().mean().item()


class Interleave(pl.Callback):
    """At the start of every rnnlab epoch, runs one plain epoch; records both loops' epoch times."""

    def __init__(self, plain: PlainLoop, clock: Callable[[], float]):
        self.plain, self.clock = plain, clock
        self.plain_times: list[float] = []
        self.rnnlab_times: list[float] = []  # from the end of this hook to its next call
        self._resumed: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        now = self.clock()
        if self._resumed is not None:
            self.rnnlab_times.append(now - self._resumed)
        self.plain.epoch()
        self.plain_times.append(self.clock() - now)
        self._resumed = self.clock()

    def pairs(self) -> list[tuple[float, float]]:
        """(rnnlab epoch, the plain epoch right after it), the warm-up pair left out."""
        return list(zip(self.rnnlab_times[1:], self.plain_times[2:]))


def paired_epochs(
    overrides: list[str], epochs: int, workdir: Path, data_dir: Path, clock: Callable[[], float] = time.perf_counter
) -> list[tuple[float, float]]:
    """(rnnlab s, plain s) of each timed epoch pair of one interleaved run of ``epochs`` epochs."""
    from rnnlab.app.train import train

    interleave = Interleave(PlainLoop(overrides, workdir, data_dir), clock)
    cfg = compose_run_config(
        [
            *SAME_OPTIMISER,
            *QUIET,
            *overrides,
            f"trainer.max_epochs={epochs}",
            "test=false",
            f"threads={torch.get_num_threads()}",
            f"paths.log_dir={workdir / 'logs'}",
        ],
        output_dir=workdir / f"run{time.monotonic_ns()}",
        data_dir=data_dir,
    )
    train(cfg, extra_callbacks=[interleave])
    return interleave.pairs()


def summarise(name: str, pairs: list[tuple[float, float]]) -> tuple:
    """A row of COLUMNS: mean seconds per epoch of each loop, their ratio, the per-pair ratios' quartiles."""
    rnnlab, plain = (statistics.mean(column) for column in zip(*pairs))
    ratios = sorted(r / p for r, p in pairs)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return name, rnnlab, plain, rnnlab / plain, (quartiles[0], quartiles[2])


def run(
    models: dict[str, list[str]],
    epochs: int = 22,
    data_dir: Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple]:
    """Rows of COLUMNS, one interleaved run of ``epochs`` epochs per model.

    ``clock``: wall time, or ``time.process_time`` (CPU time of all this process's threads: with one torch
    thread, other processes on the machine do not inflate it).
    """
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as tmp:
        workdir = Path(tmp)
        data_dir = data_dir or workdir / "data"
        return [
            summarise(name, paired_epochs(overrides, epochs, workdir, data_dir, clock))
            for name, overrides in models.items()
        ]


def markdown(rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, rnnlab, plain, ratio, (low, high) in rows:
        lines.append(f"| {name} | {rnnlab:.3f} | {plain:.3f} | {ratio:.2f}× | {low:.2f}–{high:.2f} |")
    return "\n".join(lines)
