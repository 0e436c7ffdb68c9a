"""Datamodules. Each keeps its whole split as tensors and batches by tensor indexing (no per-sample collation).

A datamodule tells the model what task it poses through ``task`` (a :class:`TaskSpec`), so choosing
``data=...`` is enough to get the right head, loss and metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


@dataclass(frozen=True)
class TaskSpec:
    """What a dataset asks of a model.

    kind: ``classification`` (cross-entropy over ``output_size`` classes) or ``regression`` (MSE).
    input_size: D, features per time step. seq_len: T. output_size: classes or regression targets.
    per_step: a target at every step (many-to-many: y (N, T, O)) instead of one per sequence (y (N, O)).
    trivial_mse: MSE of the best constant predictor (regression), the yardstick of ``mse_ratio``.
    tolerance: a prediction within this of its target counts as solved (reported as ``within_tol``).
    stateful: batches continue each other row by row; the model carries its hidden state across them.
    generative: inputs and targets are the same series, so predictions can be fed back (generation).
    encoding: for token inputs (x (N, T) indices into ``input_size`` tokens): ``onehot`` or ``embedding``
    (of ``embedding_dim``); None for real-valued inputs. token_metric: ``bpc`` or ``ppl`` (language models).
    """

    kind: str
    input_size: int
    seq_len: int
    output_size: int
    per_step: bool = False
    trivial_mse: float | None = None
    tolerance: float | None = None
    stateful: bool = False
    generative: bool = False
    encoding: str | None = None
    embedding_dim: int | None = None
    token_metric: str | None = None


class TensorPairs(Dataset):
    """(x, y) tensors indexed by a whole batch of indices at once: ``ds[idx]`` -> (x[idx], y[idx])."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx]


class EpochSeededBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of one batch each; the shuffle order depends only on (seed, epoch).

    Lightning calls ``set_epoch`` at the start of every epoch, so a resumed run sees exactly the batches an
    uninterrupted one would, whatever the global RNG did in between.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, seed: int):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        yield from order.split(self.batch_size)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)


def tensor_loader(dataset: TensorPairs, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A DataLoader that hands the dataset one index tensor per batch (``batch_size=None`` turns off collation)."""
    sampler = EpochSeededBatchSampler(len(dataset), batch_size, shuffle, seed)
    return DataLoader(dataset, sampler=sampler, batch_size=None)


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


# --------------------------------------------------------------------------------------------- MNIST-1D


def mnist1d_arrays(data_dir: str | os.PathLike, **overrides) -> dict[str, np.ndarray]:
    """The MNIST-1D dataset generated locally with ``mnist1d`` (never downloaded), cached as .npz.

    Returns ``x`` (4000, 40), ``y`` (4000,), ``x_test`` (1000, 40), ``y_test`` (1000,) for the default
    arguments; ``overrides`` change ``mnist1d.data.get_dataset_args()`` fields (and the cache key).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    unknown = set(overrides) - set(args)
    if unknown:
        raise ValueError(f"unknown mnist1d argument(s) {sorted(unknown)}; allowed: {sorted(args)}")
    args.update(overrides)
    key = hashlib.sha1(json.dumps({k: v for k, v in args.items() if k != "url"}, sort_keys=True).encode()).hexdigest()
    path = Path(data_dir) / "mnist1d" / f"mnist1d-{key[:12]}.npz"
    if not path.exists():
        from mnist1d.utils import ObjectView

        data = make_dataset(ObjectView(args))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: parallel trials may generate the cache at the same time.
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **{k: data[k] for k in ("x", "y", "x_test", "y_test")})
        os.replace(tmp, path)
    with np.load(path) as cached:
        return {k: cached[k] for k in cached.files}


class MNIST1DDataModule(pl.LightningDataModule):
    """MNIST-1D as sequences: each sample of 40 scalars becomes (T=40, D=1); 10 classes.

    Splits: the canonical 4000/1000 train/test split; ``val_size`` samples of the 4000 are carved out
    for validation with ``split_seed`` (the official 1000 stay the test set).
    Batches: x (N, 40, 1) float32, y (N,) int64. Validation and test use ``eval_batch_size`` (no
    gradients, so bigger batches only save per-batch overhead).
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 500,
        split_seed: int = 0,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        self.data_dir = data_dir
        self.batch_size = _positive("data.batch_size", batch_size)
        self.eval_batch_size = _positive("data.eval_batch_size", eval_batch_size)
        self.val_size = _positive("data.val_size", val_size)
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.task = TaskSpec(kind="classification", input_size=1, seq_len=40, output_size=10)
        self.splits: dict[str, TensorPairs] = {}

    def prepare_data(self) -> None:
        mnist1d_arrays(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = mnist1d_arrays(self.data_dir)
        x = torch.as_tensor(arrays["x"], dtype=torch.float32).unsqueeze(-1)
        y = torch.as_tensor(arrays["y"], dtype=torch.long)
        if self.val_size >= len(x):
            raise ValueError(f"data.val_size={self.val_size} must be smaller than the {len(x)} training samples")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        self.splits = {
            "train": TensorPairs(x[train_idx], y[train_idx]),
            "val": TensorPairs(x[val_idx], y[val_idx]),
            "test": TensorPairs(
                torch.as_tensor(arrays["x_test"], dtype=torch.float32).unsqueeze(-1),
                torch.as_tensor(arrays["y_test"], dtype=torch.long),
            ),
        }

    def train_dataloader(self) -> DataLoader:
        return tensor_loader(self.splits["train"], self.batch_size, shuffle=True, seed=self.shuffle_seed)

    def val_dataloader(self) -> DataLoader:
        return tensor_loader(self.splits["val"], self.eval_batch_size, shuffle=False, seed=0)

    def test_dataloader(self) -> DataLoader:
        return tensor_loader(self.splits["test"], self.eval_batch_size, shuffle=False, seed=0)
