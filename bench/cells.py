"""Speed of the from-scratch cells against the built-in torch.nn ones: forward + backward, float32, CPU by default.

For each kind and hidden size, a custom one-layer ``RNNStack`` and its torch.nn counterpart (same
weights, via ``to_torch``) train on the same batch in one process. Their runs are interleaved (the
order alternates every repeat), so a noisy, shared machine slows both alike, and the median of many
repeats is reported. On a GPU (``device="cuda"``: cuDNN for the built-in cells, eager per-step kernels for
the custom ones) every timed step ends with ``torch.cuda.synchronize``, so the clock sees the finished work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from rnnlab.cells import CELLS, RNNStack, fused, to_torch

COLUMNS = ("cell", "H", "custom ms", "builtin ms", "custom/builtin")


def _step(
    module: nn.Module, x: torch.Tensor, weight: torch.Tensor, sync: Callable[[], None] = lambda: None
) -> Callable[[], None]:
    """One training step's recurrent work: forward, a loss on every output, backward (then ``sync``: waiting for
    a GPU to finish)."""

    def step() -> None:
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        (out * weight).sum().backward()
        sync()

    return step


def _median_ms(
    steps: dict[str, Callable[[], None]], repeats: int, warmup: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Median time of each step in ms by ``clock``, the steps interleaved in alternating order."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(warmup + repeats):
        for name in names if r % 2 else reversed(names):
            start = clock()
            steps[name]()
            if r >= warmup:
                times[name].append((clock() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def run(
    hidden_sizes: tuple[int, ...] = (32, 128),
    batch: int = 100,
    steps: int = 40,
    input_size: int = 1,
    repeats: int = 60,
    warmup: int = 5,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    device: str = "cpu",
) -> list[tuple]:
    """Rows of COLUMNS: median ms of forward + backward for each cell kind and hidden size.

    ``clock`` is wall time by default; ``time.thread_time`` (CPU time of this thread) leaves out the
    time other processes take the core, and counts all the work when torch runs on one thread only.
    ``device``: where the cells and the batch live (``cuda``: use wall time).
    """
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(seed)
    rows = []
    for hidden in hidden_sizes:
        for cell in CELLS:
            custom = RNNStack(cell, input_size, hidden).to(device)
            builtin = to_torch(custom)  # same weights, device and dtype
            x = torch.randn(batch, steps, input_size, device=device)
            weight = torch.randn(batch, steps, hidden, device=device)
            timed = {"custom": _step(custom, x, weight, sync), "builtin": _step(builtin, x, weight, sync)}
            ms = _median_ms(timed, repeats, warmup, clock)
            rows.append((cell, hidden, ms["custom"], ms["builtin"], ms["custom"] / ms["builtin"]))
    return rows


def markdown(rows: list[tuple], device: str = "cpu") -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for cell, hidden, custom, builtin, ratio in rows:
        lines.append(f"| {cell} | {hidden} | {custom:.2f} | {builtin:.2f} | {ratio:.2f}× |")
    if torch.device(device).type == "cuda":
        tf32 = f"cuDNN {_on(torch.backends.cudnn.allow_tf32)}, matmul {_on(torch.backends.cuda.matmul.allow_tf32)}"
        return "\n".join(lines) + (
            "\n\nCustom cells on CUDA: eager per-step kernels (the fused C++ LSTM is CPU-only); built-in: cuDNN. "
            f"TF32 (torch's defaults): {tf32}."
        )
    # Which LSTM recurrence the custom rows timed: without a C++ compiler it falls back to the slower eager one.
    lstm = (
        "fused C++ kernels (rnnlab.cells.fused)"
        if fused.lstm_ops(torch.zeros(1)) is not None
        else "eager (RNNLAB_FUSED=0 or no build)"
    )
    return "\n".join(lines) + f"\n\nCustom LSTM: {lstm}."


def _on(flag: bool) -> str:
    return "on" if flag else "off"
