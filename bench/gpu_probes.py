"""Callbacks that ``make gpu-check`` adds to ``src/train.py`` from the command line (bench/ on PYTHONPATH):

    +callbacks.epoch_clock._target_=gpu_probes.EpochClock +callbacks.epoch_clock.path=<file.json>
    +callbacks.copies._target_=gpu_probes.HostToDeviceCopies +callbacks.copies.path=<file.json>

Neither imports rnnlab: they see the run only through Lightning's hooks, and write what they measured to a
JSON file that bench/gpu_check.py and tests/test_gpu.py read.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

# A copy this big or bigger carries data (an MNIST-1D batch is 16 kB, its labels 800 B, a batch's index tensor
# 800 B); below it, a few scalars (a Python number or list turned into a tensor on the GPU).
DATA_SIZED_BYTES = 64


def _sync(pl_module: pl.LightningModule) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


class EpochClock(pl.Callback):
    """Writes, after every training epoch, the list of epochs so far to ``path`` (JSON), each as
    ``{"epoch", "start", "seconds", "validation_seconds"}``: ``start`` is ``time.perf_counter()`` at the epoch's
    start, ``seconds`` the training part (from ``on_train_epoch_start`` to ``on_train_epoch_end``, the
    validation inside it taken out), ``validation_seconds`` the validation run at the epoch's end. The GPU is
    synchronized at each of these points, so the times hold the finished GPU work. Checkpointing (after
    ``on_train_epoch_end``) is in neither; the gap between two epochs' starts holds everything."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epochs: list[dict] = []
        self._start: float | None = None
        self._val_start: float | None = None
        self._val = 0.0

    def _now(self, pl_module: pl.LightningModule) -> float:
        _sync(pl_module)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._val = self._now(pl_module), 0.0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self._start is not None:
            self._val_start = self._now(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._val_start is not None:
            self._val += self._now(pl_module) - self._val_start
            self._val_start = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._start is None:
            return
        end = self._now(pl_module)
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "start": self._start,
                "seconds": end - self._start - self._val,
                "validation_seconds": self._val,
            }
        )
        self.path.write_text(json.dumps(self.epochs))
        self._start = None


def host_to_device_copies(events: list[dict]) -> list[dict]:
    """The host-to-device copies of a torch.profiler Chrome trace's ``traceEvents``: each as ``{"name", "bytes",
    "op"}``, ``op`` the name of the aten op that issued it (linked by the trace's ``External id``), or ``?``.

    Kineto writes a GPU copy as ``{"cat": "gpu_memcpy", "name": "Memcpy HtoD (Pageable -> Device)", "args":
    {"bytes": ..., "External id": ...}}`` and an op as ``{"cat": "cpu_op", "args": {"External id": ...}}``.
    """
    ops = {
        event["args"]["External id"]: event.get("name", "?")
        for event in events
        if event.get("cat") == "cpu_op" and "External id" in event.get("args", {})
    }
    copies = []
    for event in events:
        name = str(event.get("name", ""))
        if str(event.get("cat", "")).lower() in ("gpu_memcpy", "memcpy") and "HtoD" in name:
            args = event.get("args", {})
            copies.append(
                {"name": name, "bytes": int(args.get("bytes", -1)), "op": ops.get(args.get("External id"), "?")}
            )
    return copies


def count_kernels(events: list[dict]) -> int:
    """GPU kernels in a trace: none means the profiler saw no GPU activity (no CUPTI), so no copies proves nothing."""
    return sum(1 for event in events if event.get("cat") == "kernel")


def trace_events(profiler: torch.profiler.profile) -> list[dict]:
    """The ``traceEvents`` of a stopped profiler (through its Chrome trace export)."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-trace-") as tmp:
        path = Path(tmp) / "trace.json"
        profiler.export_chrome_trace(str(path))
        return json.loads(path.read_text()).get("traceEvents", [])


def profile_cuda(work: Callable[[], None]) -> list[dict]:
    """The trace events of ``work()`` profiled with CPU and CUDA activity (the GPU synchronized before and after)."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as profiler:
        work()
        torch.cuda.synchronize()
    return trace_events(profiler)


class HostToDeviceCopies(pl.Callback):
    """Profiles training steps 2 .. ``steps`` + 1 of the first epoch (CPU and CUDA activity, from the end of the
    first step to the end of the last one, so the window holds the fetching of those batches, their transfer
    hooks and the steps) and writes ``{"steps", "kernels", "copies"}`` to ``path`` (JSON): ``copies`` is every
    host-to-device copy in that window (``host_to_device_copies``). The epoch needs ``steps`` + 1 batches; with
    fewer, the window ends with the epoch and ``steps`` says how many it held."""

    def __init__(self, path: str, steps: int = 5) -> None:
        self.path, self.steps = Path(path), int(steps)
        self._profiler: torch.profiler.profile | None = None
        self._last = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.current_epoch != 0:
            return
        if batch_idx == 0 and self._profiler is None:
            _sync(pl_module)
            activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            self._profiler = torch.profiler.profile(activities=activities)
            self._profiler.start()
        elif self._profiler is not None:
            self._last = batch_idx
            if batch_idx == self.steps:
                self._finish(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._profiler is not None:
            self._finish(pl_module)

    def _finish(self, pl_module: pl.LightningModule) -> None:
        _sync(pl_module)
        profiler, self._profiler = self._profiler, None
        profiler.stop()
        events = trace_events(profiler)
        result = {"steps": self._last, "kernels": count_kernels(events), "copies": host_to_device_copies(events)}
        self.path.write_text(json.dumps(result))
