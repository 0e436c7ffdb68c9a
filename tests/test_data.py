"""MNIST-1D: the canonical data, splits and tensor batching."""

from __future__ import annotations

import pytest
import torch

from rnnlab.data import EpochSeededBatchSampler, MNIST1DDataModule, mnist1d_arrays


def test_canonical_fingerprint(data_dir):
    arrays = mnist1d_arrays(data_dir)
    assert arrays["x"].shape == (4000, 40) and arrays["x_test"].shape == (1000, 40)
    assert arrays["y"][:5].tolist() == [2, 6, 4, 5, 6]
    assert arrays["x"][0].sum() == pytest.approx(1.8244, abs=1e-4)


def test_splits_are_sequences_and_disjoint(data_dir):
    dm = MNIST1DDataModule(data_dir=str(data_dir), val_size=500)
    dm.setup()
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 40, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    train_rows = {tuple(r.flatten().tolist()) for r in dm.splits["train"].x}
    assert not any(tuple(r.flatten().tolist()) in train_rows for r in dm.splits["val"].x)
    assert dm.task.input_size == 1 and dm.task.seq_len == 40 and dm.task.output_size == 10


def test_validation_split_does_not_depend_on_the_run_seed(data_dir):
    a = MNIST1DDataModule(data_dir=str(data_dir), shuffle_seed=1)
    b = MNIST1DDataModule(data_dir=str(data_dir), shuffle_seed=2)
    a.setup(), b.setup()
    assert torch.equal(a.splits["val"].y, b.splits["val"].y)


def test_batches_depend_only_on_seed_and_epoch():
    def order(seed, epoch):
        sampler = EpochSeededBatchSampler(10, batch_size=4, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return torch.cat(list(sampler)).tolist()

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == list(range(10))
    assert [len(b) for b in EpochSeededBatchSampler(10, batch_size=4, shuffle=False, seed=0)] == [4, 4, 2]


@pytest.mark.parametrize(
    "kwargs, match", [({"batch_size": 0}, "data.batch_size=0"), ({"val_size": -5}, "data.val_size=-5")]
)
def test_bad_sizes_are_rejected(data_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MNIST1DDataModule(data_dir=str(data_dir), **kwargs)
