"""Framework overhead: an MNIST-1D training epoch through rnnlab against a plain PyTorch loop.

rnnlab: ``rnnlab.training.train`` on the default config (Lightning Trainer, TensorBoard logger, the
default callbacks: checkpoints, learning-rate monitor, gradient diagnostics, views), with the
optimiser the plain loop uses (Adam, constant lr) so both do the same arithmetic; no progress bar.
Plain: the course lab's loop: a ``DataLoader`` over a ``TensorDataset``, batch 100, shuffled, Adam,
nothing logged, validation accuracy computed after each epoch. Same model class, data split and
batch size. An epoch is timed from the start of one training epoch to the start of the next, so
rnnlab's includes validation, logging, checkpointing and, every 5th epoch, the gradient diagnostics;
the first epoch (warm-up) and the last (whose interval would end after what runs once when training
ends: rnnlab's gradient figure) are left out, so with 12 epochs epochs 2-11 are timed, two of them
diagnosed. The two alternate ``rounds`` times in one process; each round's mean epoch is taken (so
periodic work counts at its rate), and the fastest round of each is compared: on a shared machine other
processes only ever add time, so the least-disturbed round is the best estimate of each loop's own cost
(as ``timeit`` advises).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.config import compose_run_config

COLUMNS = ("model", "rnnlab s/epoch", "plain s/epoch", "rnnlab/plain")

# Same arithmetic in both loops: Adam at a constant lr.
SAME_OPTIMISER = ["model/optimizer=adam", "~model/scheduler"]
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


class EpochStarts(pl.Callback):
    """Records the time at the start of every training epoch."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.times.append(self.clock())


def _intervals(starts: list[float]) -> list[float]:
    """Epoch durations from epoch start times: each start to the next, without the first (warm-up) epoch."""
    return [b - a for a, b in zip(starts[1:], starts[2:])]


def rnnlab_epochs(overrides: list[str], epochs: int, workdir: Path, data_dir: Path, clock=time.perf_counter) -> list[float]:
    """Seconds per epoch of a Lightning fit through rnnlab, the first and last epochs left out."""
    from rnnlab.training import train

    cfg = compose_run_config(
        [*SAME_OPTIMISER, *QUIET, *overrides, f"trainer.max_epochs={epochs}", "test=false", f"threads={torch.get_num_threads()}",
         f"paths.log_dir={workdir / 'logs'}"],
        output_dir=workdir / f"run{time.monotonic_ns()}", data_dir=data_dir,
    )
    timer = EpochStarts(clock)
    train(cfg, extra_callbacks=[timer])
    return _intervals(timer.times)


def plain_epochs(overrides: list[str], epochs: int, workdir: Path, data_dir: Path, clock=time.perf_counter) -> list[float]:
    """Seconds per epoch of the course lab's loop on the same model, data and batch size."""
    cfg = compose_run_config([*SAME_OPTIMISER, *overrides], output_dir=workdir / "plain", data_dir=data_dir)
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, task=datamodule.task)
    train_split, val_split = datamodule.splits["train"], datamodule.splits["val"]
    loader = DataLoader(TensorDataset(train_split.x, train_split.y), batch_size=cfg.data.batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.model.optimizer.lr)
    starts = []
    for _ in range(epochs):
        starts.append(clock())
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            (model(val_split.x).argmax(-1) == val_split.y).float().mean()
    return _intervals(starts)


def run(
    models: dict[str, list[str]], epochs: int = 12, rounds: int = 3, data_dir: Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple]:
    """Rows of COLUMNS: seconds per epoch (fastest round) of each model's config through rnnlab and the plain loop.

    ``clock``: wall time, or ``time.process_time`` (CPU time of all this process's threads: with one torch
    thread, other processes on the machine do not inflate it).
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as tmp:
        workdir = Path(tmp)
        data_dir = data_dir or workdir / "data"
        for name, overrides in models.items():
            times: dict[str, list[float]] = {"rnnlab": [], "plain": []}  # the mean epoch of each round
            for r in range(rounds):
                order = ("rnnlab", "plain") if r % 2 else ("plain", "rnnlab")
                for which in order:
                    measure = rnnlab_epochs if which == "rnnlab" else plain_epochs
                    times[which].append(statistics.mean(measure(overrides, epochs, workdir, data_dir, clock)))
            rnnlab, plain = min(times["rnnlab"]), min(times["plain"])
            rows.append((name, rnnlab, plain, rnnlab / plain))
    return rows


def markdown(rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, rnnlab, plain, ratio in rows:
        lines.append(f"| {name} | {rnnlab:.3f} | {plain:.3f} | {ratio:.2f}× |")
    return "\n".join(lines)
