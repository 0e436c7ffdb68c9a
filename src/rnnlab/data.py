"""Datamodules. Each keeps its whole split as tensors and batches by tensor indexing (no per-sample collation).

A datamodule tells the model what task it poses through ``task`` (a :class:`TaskSpec`), so choosing
``data=...`` is enough to get the right head, loss and metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rnnlab.augment import SeriesAugment


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

    def to(self, device: torch.device | str) -> TensorPairs:
        """The same pairs on ``device`` (self when they are there already)."""
        if self.x.device == torch.device(device) and self.y.device == torch.device(device):
            return self
        return TensorPairs(self.x.to(device), self.y.to(device))


class EpochSeededBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of one batch each; the shuffle order depends only on (seed, epoch).

    Lightning calls ``set_epoch`` at the start of every epoch, so a resumed run sees exactly the batches an
    uninterrupted one would, whatever the global RNG did in between.

    Data parallel (``num_replicas`` processes, this one ``rank``): the epoch's order is cut into global
    batches of ``batch_size * num_replicas`` (as one process would with that batch size) and each process
    takes every ``num_replicas``-th sample of each global batch, starting at its rank. Every sample is used
    once per epoch across the processes, and every process gets the same number of batches (DDP needs that):
    a last global batch too small to give each process a sample joins the one before it. Indices are put on
    ``device`` once per epoch (the dataset's device), so a batch is gathered without a host-to-device copy.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        num_replicas: int = 1,
        device: torch.device | str = "cpu",
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} is not allowed; must be in [0, {num_replicas})")
        if num_samples < num_replicas:
            raise ValueError(f"{num_samples} samples cannot be shared by {num_replicas} processes (one each at least)")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.num_replicas, self.device = rank, num_replicas, torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[torch.Tensor]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        batches = list(order.to(self.device).split(self.batch_size * self.num_replicas))
        if len(batches) > 1 and len(batches[-1]) < self.num_replicas:
            batches[-2:] = [torch.cat(batches[-2:])]
        return batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self._global_batches():
            yield batch[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        global_batch = self.batch_size * self.num_replicas
        count, rest = -(-self.num_samples // global_batch), self.num_samples % global_batch
        return count - 1 if count > 1 and 0 < rest < self.num_replicas else count


def tensor_loader(
    dataset: TensorPairs, batch_size: int, shuffle: bool, seed: int, rank: int = 0, num_replicas: int = 1
) -> DataLoader:
    """A DataLoader that hands the dataset one index tensor per batch (``batch_size=None`` turns off collation)."""
    sampler = EpochSeededBatchSampler(len(dataset), batch_size, shuffle, seed, rank, num_replicas, dataset.x.device)
    return DataLoader(dataset, sampler=sampler, batch_size=None)


class TensorDataModule(pl.LightningDataModule):
    """A datamodule whose splits are :class:`TensorPairs` in ``self.splits`` (the datasets are small).

    Its loaders follow the trainer: the split's tensors move to the training device once (on a GPU a step
    then gathers its batch there, no host-to-device copy), and under data parallelism each process loads
    its own shard (``EpochSeededBatchSampler``). Without a trainer (or on CPU, one process) nothing changes.
    Trainers run with ``use_distributed_sampler: false`` (conf/trainer/default.yaml): the sharding is ours.
    """

    splits: dict[str, TensorPairs]

    def placement(self) -> tuple[torch.device, int, int]:
        """(device, rank, number of processes) of the training this datamodule feeds."""
        trainer = self.trainer
        if trainer is None:
            return torch.device("cpu"), 0, 1
        return trainer.strategy.root_device, trainer.global_rank, trainer.world_size

    def on_device(self, split: str) -> TensorPairs:
        """The split on the training device (moved once, then kept there)."""
        device, _, _ = self.placement()
        self.splits[split] = self.splits[split].to(device)
        return self.splits[split]

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
        _, rank, replicas = self.placement()
        return tensor_loader(self.on_device(split), batch_size, shuffle, seed, rank, replicas)


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


class MNIST1DDataModule(TensorDataModule):
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
        augment: dict | None = None,
    ):
        super().__init__()
        self.data_dir = data_dir
        self.batch_size = _positive("data.batch_size", batch_size)
        self.eval_batch_size = _positive("data.eval_batch_size", eval_batch_size)
        self.val_size = _positive("data.val_size", val_size)
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.augment = SeriesAugment.from_config(augment)
        self.task = TaskSpec(kind="classification", input_size=1, seq_len=40, output_size=10)
        self.splits: dict[str, TensorPairs] = {}

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches only: augmented on the device (``data.augment``)."""
        if self.augment.active and self.trainer is not None and self.trainer.training:
            x, y = batch
            return self.augment(x), y
        return batch

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
        return self.loader("train", self.batch_size, shuffle=True, seed=self.shuffle_seed)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", self.eval_batch_size, shuffle=False, seed=0)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", self.eval_batch_size, shuffle=False, seed=0)
