"""Generated sequence tasks: the dynamic and the classic adding problem, next-step prediction of a sine mixture.

Everything is generated in memory, deterministically from ``seed``; train, val and test come from
independent random streams (seed offsets), so no split sees another's sequences. The datamodules
generate in ``__init__`` (well under a second): the task spec carries the trivial predictor's MSE,
which the model needs when it is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from rnnlab.data.loaders import TensorDataModule, TensorPairs, positive_int
from rnnlab.data.task import TaskSpec

SPLITS = ("train", "val", "test")


def _generator(seed: int, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 10 + SPLITS.index(split))


def _check_probabilities(name: str, probabilities: Sequence[float]) -> torch.Tensor:
    probs = torch.tensor([float(p) for p in probabilities], dtype=torch.float64)
    if len(probs) != 3 or (probs < 0).any() or not math.isclose(float(probs.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"{name}={list(probabilities)} is not allowed; must be 3 non-negative probabilities "
            f"(for markers -1, 0, 1) that sum to 1"
        )
    return probs


def check_seq_len(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 2:
        raise ValueError(f"{name}={value!r} is not allowed; must be an integer >= 2")
    return value


def trivial_mse(y_train: torch.Tensor) -> float:
    """MSE of the best constant predictor on the training targets (their variance)."""
    return float(((y_train - y_train.mean()) ** 2).mean())


# --------------------------------------------------------------------------------------------- dynamic adding


def dynamic_adding(num_sequences: int, seq_len: int, marker_probs: Sequence[float], generator: torch.Generator):
    """The course's dynamic adding problem.

    Inputs (N, T, 2): a value u ~ U[-1, 1] and a marker m in {-1, 0, 1} drawn with ``marker_probs``.
    Target (N, T, 1): 0, except at a step whose marker is 1, where it is the sum of the values at this
    marker-1 step and at the previous marker-1 step (0 until two markers have been seen).
    """
    probs = _check_probabilities("data.marker_probs", marker_probs)
    values = torch.rand(num_sequences, seq_len, generator=generator) * 2 - 1
    markers = torch.multinomial(probs.float(), num_sequences * seq_len, replacement=True, generator=generator)
    markers = (markers - 1).view(num_sequences, seq_len).float()
    targets = torch.zeros(num_sequences, seq_len)
    # Vectorised over sequences: carry the value at the previous marker-1 step along time.
    previous = torch.zeros(num_sequences)
    seen = torch.zeros(num_sequences, dtype=torch.bool)
    for t in range(seq_len):
        is_marker = markers[:, t] == 1
        targets[:, t] = torch.where(is_marker & seen, values[:, t] + previous, torch.zeros(()))
        previous = torch.where(is_marker, values[:, t], previous)
        seen |= is_marker
    return torch.stack([values, markers], dim=-1), targets.unsqueeze(-1)


# --------------------------------------------------------------------------------------------- classic adding


def classic_adding(num_sequences: int, seq_len: int, generator: torch.Generator):
    """The long-range adding problem (Hochreiter & Schmidhuber 1997).

    Inputs (N, T, 2): a value ~ U[0, 1] and an indicator with exactly two ones, one in each half.
    Target (N, 1): the sum of the two marked values, read at the end. Predicting 1 gives MSE 1/6.
    """
    values = torch.rand(num_sequences, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (num_sequences,), generator=generator)
    second = torch.randint(half, seq_len, (num_sequences,), generator=generator)
    indicator = torch.zeros(num_sequences, seq_len)
    rows = torch.arange(num_sequences)
    indicator[rows, first] = 1.0
    indicator[rows, second] = 1.0
    targets = (values[rows, first] + values[rows, second]).unsqueeze(-1)
    return torch.stack([values, indicator], dim=-1), targets


# --------------------------------------------------------------------------------------------- sine mixture


def check_sine(periods: Sequence[float], noise: float) -> None:
    if not periods or any(not isinstance(p, (int, float)) or not 0 < p < math.inf for p in periods):
        raise ValueError(f"data.periods={list(periods)} is not allowed; must be a non-empty list of positive periods")
    if not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
        raise ValueError(f"data.noise={noise!r} is not allowed; must be a finite number >= 0")


def sine_mixture(length: int, periods: Sequence[float], noise: float, generator: torch.Generator) -> torch.Tensor:
    """A series (length,) of equal-amplitude sinusoids with random phases, scaled to peak 1, plus N(0, noise²)."""
    check_sine(periods, noise)
    t = torch.arange(length, dtype=torch.float64)
    phases = torch.rand(len(periods), generator=generator, dtype=torch.float64) * 2 * math.pi
    series = sum(torch.sin(2 * math.pi * t / p + phi) for p, phi in zip(periods, phases)) / len(periods)
    series = series + noise * torch.randn(length, generator=generator, dtype=torch.float64)
    return series.float()


def next_step_windows(series: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: x (W, seq_len, 1) = s[t:t+L], y = s[t+1:t+L+1] (the next value at every step)."""
    count = (len(series) - 1) // seq_len
    x = series[: count * seq_len].view(count, seq_len, 1)
    y = series[1 : count * seq_len + 1].view(count, seq_len, 1)
    return x, y


def stateful_chunks(series: torch.Tensor, seq_len: int, streams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The series cut into ``streams`` parallel contiguous streams, then into time chunks.

    Returns x, y of shape (K, streams, seq_len, 1): row i of chunk k+1 continues row i of chunk k, so a
    hidden state carried from one batch to the next sees one unbroken series per row.
    """
    per_stream = (len(series) - 1) // streams
    chunks = per_stream // seq_len
    if chunks < 1:
        raise ValueError(
            f"data.series_len={len(series)} is too short for {streams} streams of chunks of data.seq_len={seq_len}"
        )
    usable = chunks * seq_len

    def layout(s: torch.Tensor) -> torch.Tensor:
        rows = s[: streams * per_stream].view(streams, per_stream)[:, :usable]
        return rows.view(streams, chunks, seq_len).transpose(0, 1).unsqueeze(-1).contiguous()

    return layout(series[:-1]), layout(series[1:])


# --------------------------------------------------------------------------------------------- datamodules


class GeneratedDataModule(TensorDataModule):
    """Splits generated up front as tensors; subclasses fill ``self.splits`` and ``self.task``."""

    splits: dict[str, TensorPairs]
    task: TaskSpec

    def __init__(self, batch_size: int, seed: int, shuffle_seed: int):
        super().__init__()
        self.batch_size = batch_size
        self.seed, self.shuffle_seed = seed, shuffle_seed

    @classmethod
    def check_arguments(cls, *args: Any, **arguments: Any) -> None:
        """Every generated task's ``data.batch_size``; open like its base's, so that subclasses name theirs."""
        positive_int("data.batch_size", arguments["batch_size"])

    def _loader(self, split: str) -> DataLoader:
        return self.loader(split, self.batch_size, shuffle=split == "train", seed=self.shuffle_seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class DynamicAddingDataModule(GeneratedDataModule):
    """The course setup: 9 sequences of 3000 steps per split, batch 3; x (N, T, 2), y (N, T, 1)."""

    def __init__(
        self,
        num_sequences: int = 9,
        seq_len: int = 3000,
        marker_probs: Sequence[float] = (0.25, 0.25, 0.5),
        batch_size: int = 3,
        seed: int = 0,
        shuffle_seed: int = 0,
    ):
        self.check_arguments(
            num_sequences=num_sequences, seq_len=seq_len, marker_probs=marker_probs, batch_size=batch_size
        )
        super().__init__(batch_size, seed, shuffle_seed)
        self.splits = {
            split: TensorPairs(*dynamic_adding(num_sequences, seq_len, marker_probs, _generator(seed, split)))
            for split in SPLITS
        }
        self.task = TaskSpec(
            kind="regression",
            input_size=2,
            seq_len=seq_len,
            output_size=1,
            per_step=True,
            trivial_mse=trivial_mse(self.splits["train"].y),
        )

    @classmethod
    def check_arguments(cls, *, num_sequences: int, seq_len: int, marker_probs: Sequence[float], **arguments) -> None:
        super().check_arguments(**arguments)
        positive_int("data.num_sequences", num_sequences)
        check_seq_len("data.seq_len", seq_len)
        _check_probabilities("data.marker_probs", marker_probs)


class AddingDataModule(GeneratedDataModule):
    """The classic adding problem: x (N, T, 2), y (N, 1), read at the end; success = within 0.04."""

    def __init__(
        self,
        seq_len: int = 100,
        num_train: int = 10000,
        num_val: int = 1000,
        num_test: int = 1000,
        tolerance: float = 0.04,
        batch_size: int = 100,
        seed: int = 0,
        shuffle_seed: int = 0,
    ):
        self.check_arguments(
            seq_len=seq_len, num_train=num_train, num_val=num_val, num_test=num_test, batch_size=batch_size
        )
        super().__init__(batch_size, seed, shuffle_seed)
        sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.splits = {
            split: TensorPairs(*classic_adding(size, seq_len, _generator(seed, split))) for split, size in sizes.items()
        }
        self.task = TaskSpec(
            kind="regression",
            input_size=2,
            seq_len=seq_len,
            output_size=1,
            trivial_mse=trivial_mse(self.splits["train"].y),
            tolerance=tolerance,
        )

    @classmethod
    def check_arguments(cls, *, seq_len: int, num_train: int, num_val: int, num_test: int, **arguments) -> None:
        super().check_arguments(**arguments)
        check_seq_len("data.seq_len", seq_len)
        for name, size in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            positive_int(f"data.{name}", size)


class SineDataModule(GeneratedDataModule):
    """Next-step prediction of a noisy sine mixture: x, y (N, seq_len, 1), a target at every step.

    Each split is its own series of ``series_len`` points. ``stateful=True`` keeps the order of the series
    (batch_size parallel streams, consecutive chunks) so the model can carry its hidden state across
    batches (truncated BPTT); otherwise non-overlapping windows are shuffled.
    """

    def __init__(
        self,
        series_len: int = 20000,
        seq_len: int = 50,
        periods: Sequence[float] = (25.0, 60.0),
        noise: float = 0.05,
        stateful: bool = False,
        batch_size: int = 32,
        seed: int = 0,
        shuffle_seed: int = 0,
    ):
        self.check_arguments(
            series_len=series_len,
            seq_len=seq_len,
            periods=periods,
            noise=noise,
            stateful=stateful,
            batch_size=batch_size,
        )
        super().__init__(batch_size, seed, shuffle_seed)
        self.stateful = stateful
        self.series = {split: sine_mixture(series_len, periods, noise, _generator(seed, split)) for split in SPLITS}
        self.splits = {}
        for split, series in self.series.items():
            if stateful:
                x, y = stateful_chunks(series, seq_len, self.batch_size)
            else:
                x, y = next_step_windows(series, seq_len)
            self.splits[split] = TensorPairs(x, y)
        self.task = TaskSpec(
            kind="regression",
            input_size=1,
            seq_len=seq_len,
            output_size=1,
            per_step=True,
            trivial_mse=trivial_mse(self.series["train"]),
            stateful=stateful,
            generative=True,
        )

    @classmethod
    def check_arguments(
        cls, *, series_len: int, seq_len: int, periods: Sequence[float], noise: float, stateful: bool, **arguments
    ) -> None:
        super().check_arguments(**arguments)
        check_seq_len("data.seq_len", seq_len)
        positive_int("data.series_len", series_len)
        check_sine(periods, noise)
        # Sizes alone say whether a split holds one window (one chunk per stream): no series is generated.
        streams = arguments["batch_size"] if stateful else 1
        if (series_len - 1) // streams < seq_len:
            per = f" for each of data.batch_size={streams} streams (data.stateful=true)" if stateful else ""
            raise ValueError(
                f"data.series_len={series_len} is too short: it must hold one window of data.seq_len={seq_len} "
                f"plus its target{per}; give data.series_len >= {streams * seq_len + 1}"
            )

    def _loader(self, split: str) -> DataLoader:
        if self.stateful:  # one chunk of all streams per batch, in time order; a process keeps its own streams
            _, rank, replicas = self.placement()
            chunks = self.on_device(split)
            if chunks.x.shape[1] < replicas:
                raise ValueError(f"data.batch_size={self.batch_size} streams cannot be shared by {replicas} processes")
            streams = TensorPairs(chunks.x[:, rank::replicas].contiguous(), chunks.y[:, rank::replicas].contiguous())
            return DataLoader(streams, batch_size=None, shuffle=False)
        return super()._loader(split)

    def continuation(self, split: str, seed_len: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A seed (1, seed_len, 1) from the start of a split's series and its true continuation (1, steps, 1)."""
        series = self.series[split]
        if seed_len + steps > len(series):
            raise ValueError(f"seed_len + steps = {seed_len + steps} exceeds the {len(series)}-point {split} series")
        return series[:seed_len].view(1, -1, 1), series[seed_len : seed_len + steps].view(1, -1, 1)
