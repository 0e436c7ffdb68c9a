"""How a metric's numbers are written in every report, table and figure: one home for units and ranges.

Accuracies are percentages (their differences in points); other metrics keep their own scale. "±" is always
one sample standard deviation over seeds; intervals are written ``[low, high]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

Plotted = TypeVar("Plotted", float, "np.ndarray")  # one value, or a curve


class MetricFormat:
    """The units and the range of ``metric`` (``test/acc``, ``val/mse_best``, ``test/bpc``, ...)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        name = metric.split("/", 1)[-1]
        self.percent = name.startswith(("acc", "within"))
        self.scale, self.unit = (100.0, "points") if self.percent else (1.0, "")
        # the values a metric can take: an interval of its mean is clipped to them
        self.bounds = (0.0, 1.0) if self.percent else (1.0, math.inf) if name.startswith("ppl") else (0.0, math.inf)

    def value(self, v: float | None) -> str:
        """``98.63%`` for an accuracy, four significant digits otherwise; a dash for a missing value."""
        if v is None or not math.isfinite(v):
            return "–"
        return f"{v * 100:.2f}%" if self.percent else f"{v:.4g}"

    def spread(self, v: float | None) -> str:
        """A standard deviation in the value's units (points for an accuracy)."""
        if v is None or not math.isfinite(v):
            return "–"
        return f"{v * 100:.2f}" if self.percent else f"{v:.2g}"

    def mean_std(self, mean: float, std: float, n: int) -> str:
        """``98.63% ± 0.46`` (± one sample std); the mean alone for one seed; a dash for none."""
        if n == 0:
            return "–"
        return self.value(mean) if n == 1 else f"{self.value(mean)} ± {self.spread(std)}"

    def interval(self, low: float, high: float, clipped: bool = False) -> str:
        """``[96.4%, 98.5%]``, starred where it was clipped to the metric's range."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return "–"
        return f"[{self.value(low)}, {self.value(high)}]" + ("*" if clipped else "")

    def clip(self, low: float, high: float) -> tuple[float, float, bool]:
        """``(low, high)`` within the metric's range, and whether that changed them."""
        lo, hi = max(low, self.bounds[0]), min(high, self.bounds[1])
        return lo, hi, (lo, hi) != (low, high)

    def axis_label(self) -> str:
        return f"{self.metric} (%)" if self.percent else self.metric

    def plotted(self, v: Plotted) -> Plotted:
        """A value as a figure plots it (percent for an accuracy, as the tables write it)."""
        return v * self.scale
