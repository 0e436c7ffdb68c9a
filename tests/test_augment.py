"""Training-batch augmentation (data.augment): each transform's effect and bounds, train-only, errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rnnlab.data import MNIST1DDataModule
from rnnlab.data.augment import SeriesAugment


def _batch(n: int = 64, steps: int = 40) -> torch.Tensor:
    return torch.randn(n, steps, 1, generator=torch.Generator().manual_seed(0))


def test_all_zero_is_the_identity():
    x = _batch()
    assert not SeriesAugment().active
    assert SeriesAugment()(x) is x


def test_shift_rolls_each_sample_circularly_within_the_bound():
    torch.manual_seed(1)
    x = _batch()
    out = SeriesAugment(shift=3)(x)
    offsets = []
    for row, shifted in zip(x, out):
        matches = [k for k in range(-3, 4) if torch.equal(torch.roll(row, k, dims=0), shifted)]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 3  # each sample draws its own shift


def test_stretch_dilates_time_by_a_bounded_factor_per_sample():
    torch.manual_seed(3)
    ramp = torch.arange(40.0).view(1, 40, 1).repeat(16, 1, 1)
    out = SeriesAugment(stretch=0.2)(ramp)
    middle = out[:, 15:25, 0]  # away from the circular seam, a ramp stays a ramp: slope 1 / (1 + u)
    slopes = middle[:, 1:] - middle[:, :-1]
    assert torch.allclose(slopes, slopes[:, :1].expand_as(slopes), atol=1e-4)
    assert slopes.min() >= 1 / 1.2 - 1e-4 and slopes.max() <= 1 / 0.8 + 1e-4 and slopes[:, 0].std() > 0.01
    assert torch.allclose(out[:, 19:21].mean(1), ramp[:, 19:21].mean(1), atol=1e-4)  # the middle stays put
    constant = torch.full((4, 40, 1), 2.5)
    assert torch.allclose(SeriesAugment(stretch=0.3)(constant), constant)


def test_scale_shear_and_noise_stay_within_their_bounds():
    torch.manual_seed(2)
    x = _batch().abs() + 0.5
    factors = SeriesAugment(scale=0.2)(x) / x
    assert torch.allclose(factors, factors[:, :1])  # one factor per sample
    assert factors.min() >= 0.8 - 1e-6 and factors.max() <= 1.2 + 1e-6 and factors.std() > 0.01

    ramps = SeriesAugment(shear=0.5)(x) - x  # a straight line through 0 at the middle, |slope| <= 0.5
    slopes = ramps[:, -1, 0] - ramps[:, 0, 0]
    assert slopes.abs().max() <= 0.5 + 1e-6 and slopes.std() > 0.01
    assert torch.allclose(ramps[:, 1:] - ramps[:, :-1], (slopes / 39).view(-1, 1, 1).expand(-1, 39, 1), atol=1e-5)

    noise = SeriesAugment(noise=0.1)(x) - x
    assert noise.std().item() == pytest.approx(0.1, rel=0.1)


def test_device_and_dtype_follow_the_input():
    x = _batch().double()
    out = SeriesAugment(shift=2, stretch=0.1, scale=0.1, shear=0.1, noise=0.01)(x)
    assert out.dtype == torch.float64 and out.device == x.device and out.shape == x.shape


@pytest.mark.parametrize(
    "config, message",
    [
        ({"shift": -1}, "data.augment.shift=-1 is not allowed"),
        ({"noise": "a"}, "data.augment.noise='a'"),
        ({"stretch": 1.0}, "data.augment.stretch=1.0 is not allowed; must be < 1"),
        ({"rotate": 1}, "data.augment.rotate is not allowed; allowed: shift, stretch, scale, shear, noise"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(config, message):
    with pytest.raises(ValueError, match=message):
        SeriesAugment.from_config(config)


def test_the_datamodule_augments_training_batches_only(data_dir):
    datamodule = MNIST1DDataModule(data_dir=str(data_dir), augment={"shift": 5, "noise": 0.1})
    x, y = _batch(8), torch.arange(8)
    for training, changed in ((True, True), (False, False)):
        datamodule.trainer = SimpleNamespace(training=training)
        out_x, out_y = datamodule.on_after_batch_transfer((x, y), 0)
        assert out_y is y and (not torch.equal(out_x, x)) == changed
