"""Random label-preserving transforms of training series, applied on the device, batch by batch.

The kinds are those the mnist1d generator itself applies to its digit templates (circular shift, time
dilation, scaling, shear, noise), so an augmented sample looks like one more draw of the same digit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch


@dataclass(frozen=True)
class SeriesAugment:
    """x (N, T, D) -> x', each sample transformed with its own random draws (torch's global RNG, so a
    resumed run, which restores it, continues the same sequence of draws).

    shift: circular shift by an integer uniform in [-shift, shift] steps.
    stretch: dilate time around the middle by 1 + u, u uniform in [-stretch, stretch] (linear
    interpolation between circular neighbours, as the series are circularly shifted anyway).
    scale: multiply by 1 + u, u uniform in [-scale, scale].
    shear: add a linear ramp from -s/2 to s/2 over the sequence, s uniform in [-shear, shear].
    noise: add Gaussian noise of standard deviation ``noise``.
    All zero (the default) is the identity.
    """

    shift: int = 0
    stretch: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    noise: float = 0.0

    def __post_init__(self):
        if isinstance(self.stretch, (int, float)) and not isinstance(self.stretch, bool) and self.stretch >= 1:
            raise ValueError(f"data.augment.stretch={self.stretch!r} is not allowed; must be < 1")
        for name, value in asdict(self).items():
            integer = name == "shift"
            number = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
            if not number or not math.isfinite(value) or value < 0:  # NaN trains to NaN, inf as well
                kind = "a non-negative integer" if integer else "a finite non-negative number"
                raise ValueError(f"data.augment.{name}={value!r} is not allowed; must be {kind}")

    @classmethod
    def from_config(cls, config: Mapping | None) -> SeriesAugment:
        """From ``data.augment`` (None: off), naming any unknown key and the allowed ones."""
        config = dict(config or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise ValueError(f"data.augment.{unknown[0]} is not allowed; allowed: {', '.join(allowed)}")
        return cls(**config)

    @property
    def active(self) -> bool:
        return any(asdict(self).values())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        n, steps = x.shape[:2]

        def uniform(bound: float) -> torch.Tensor:  # (N, 1, 1) in [-bound, bound]
            return (torch.rand(n, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * bound

        if self.shift:
            offsets = torch.randint(-self.shift, self.shift + 1, (n, 1), device=x.device)
            index = (torch.arange(steps, device=x.device) - offsets) % steps  # (N, T): x'_t = x_{t - offset}
            x = x.gather(1, index.unsqueeze(-1).expand_as(x))
        if self.stretch:
            middle = (steps - 1) / 2
            t = torch.arange(steps, device=x.device, dtype=x.dtype)
            source = (middle + (t - middle) / (1 + uniform(self.stretch)[:, :, 0])) % steps  # (N, T): x'_t = x(source)
            below = source.floor()
            weight = (source - below).unsqueeze(-1)
            below = below.long()

            def at(index: torch.Tensor) -> torch.Tensor:
                return x.gather(1, index.unsqueeze(-1).expand_as(x))

            x = torch.lerp(at(below), at((below + 1) % steps), weight)
        if self.scale:
            x = x * (1 + uniform(self.scale))
        if self.shear:
            ramp = torch.linspace(-0.5, 0.5, steps, device=x.device, dtype=x.dtype).view(1, steps, 1)
            x = x + uniform(self.shear) * ramp
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return x
