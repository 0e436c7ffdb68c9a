"""MNIST-1D: the generated arrays (cached on disk) and its datamodule."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnlab.data.augment import SeriesAugment
from rnnlab.data.loaders import TensorDataModule, TensorPairs, positive_int
from rnnlab.data.task import TaskSpec

CLASSES = 10  # mnist1d's templates: the digits 0..9


def mnist1d_train_size(**overrides) -> int:
    """Training samples of the generated split (4000 for the default arguments), from mnist1d's arguments
    alone: nothing is generated or read (``make_dataset`` draws ``num_samples // 10`` per class, then splits)."""
    from mnist1d.data import get_dataset_args

    args = {**get_dataset_args(as_dict=True), **overrides}
    return int(args["num_samples"] // CLASSES * CLASSES * args["train_split"])


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
        self.check_arguments(batch_size=batch_size, eval_batch_size=eval_batch_size, val_size=val_size, augment=augment)
        super().__init__()
        self.data_dir = data_dir
        self.batch_size, self.eval_batch_size, self.val_size = batch_size, eval_batch_size, val_size
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.augment = SeriesAugment.from_config(augment)
        self.task = TaskSpec(kind="classification", input_size=1, seq_len=40, output_size=CLASSES)
        self.splits: dict[str, TensorPairs] = {}

    @classmethod
    def check_arguments(
        cls, *, batch_size: int, eval_batch_size: int, val_size: int, augment: dict | None, **arguments
    ) -> None:
        positive_int("data.batch_size", batch_size)
        positive_int("data.eval_batch_size", eval_batch_size)
        positive_int("data.val_size", val_size)
        train_size = mnist1d_train_size()
        if val_size >= train_size:
            raise ValueError(
                f"data.val_size={val_size} is not allowed; must be smaller than the {train_size} training samples "
                "it is carved from"
            )
        SeriesAugment.from_config(augment)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches only: augmented on the device (``data.augment``). Lightning also sends the model
        summary's example input (a bare tensor, no targets) through this hook: it passes unchanged."""
        is_pair = isinstance(batch, (tuple, list)) and len(batch) == 2
        if is_pair and self.augment.active and self.trainer is not None and self.trainer.training:
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
