"""Tensor datasets and loaders: whole batches indexed at once, epoch-seeded shuffling, a base datamodule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


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

    @classmethod
    def check_arguments(cls, *args: Any, **arguments: Any) -> None:
        """Raise ``ValueError`` (one line naming the ``data.*`` value) for constructor arguments that are not
        allowed, without generating or reading any data.

        A subclass's constructor calls it first; ``rnnlab.app.validate`` calls it with every constructor
        argument (defaults filled in) before the run directory exists. Checks that need the data (a corpus
        too short for its windows) stay in the constructor. A subclass names the arguments it checks
        (keyword-only) and passes the rest on to ``super()``; this open ``*args, **arguments`` signature is
        what lets each subclass name its own (a type checker treats it as "any arguments").
        """

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
