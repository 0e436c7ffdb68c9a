"""Statistics for a few seeds: mean ± std, a t confidence interval, Welch's t-test and its verdict in words."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnlab.report.stats import mean_std

LEVEL = 0.95  # confidence level of the intervals; the tests are judged at 1 - LEVEL


@dataclass
class Summary:
    """A cell's test metric over seeds: mean, sample std (ddof=1), count, the 95% t interval of the mean."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    clipped: bool = False  # the interval reached past what the metric can be and was cut to its range


def summarize(values: list[float], bounds: tuple[float, float] = (-math.inf, math.inf)) -> Summary:
    """Mean ± sample std and the ``LEVEL`` t interval (n-1 degrees of freedom; nan for fewer than 2 values),
    clipped to ``bounds``: an accuracy's interval never leaves [0, 1], however few the seeds."""
    from scipy import stats

    mean, std, n = mean_std(values)
    if n < 2:
        return Summary(mean, std, n, math.nan, math.nan)
    half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n)
    low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return Summary(mean, std, n, low, high, (low, high) != (mean - half, mean + half))


def t_factor(n: int) -> float:
    """The t quantile of a ``LEVEL`` interval from ``n`` values (4.30 for 3; 1.96 for very many)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) if n > 1 else math.nan


@dataclass
class Difference:
    """``b - a`` of two cells' means: the Welch interval and p-value (nan where they cannot be computed)."""

    a: str
    b: str
    diff: float
    low: float
    high: float
    p: float
    reason: str | None  # why there is no test, or None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        return self.reason is None and self.p < 1 - LEVEL


def welch(a: str, values_a: list[float], b: str, values_b: list[float]) -> Difference:
    """Welch's t-test (unequal variances; ``scipy.stats.ttest_ind(equal_var=False)``) of ``b`` against ``a``."""
    from scipy import stats

    xa = [v for v in values_a if v is not None and math.isfinite(v)]
    xb = [v for v in values_b if v is not None and math.isfinite(v)]
    mean_a, std_a, n_a = mean_std(xa)
    mean_b, std_b, n_b = mean_std(xb)
    diff = mean_b - mean_a
    if min(n_a, n_b) < 2:
        return Difference(a, b, diff, math.nan, math.nan, math.nan, "needs ≥ 2 seeds per cell")
    if std_a == 0 and std_b == 0:
        return Difference(a, b, diff, math.nan, math.nan, math.nan, "no spread over seeds in either cell")
    result = stats.ttest_ind(xb, xa, equal_var=False)
    interval = result.confidence_interval(LEVEL)
    return Difference(a, b, diff, float(interval.low), float(interval.high), float(result.pvalue), None)


def verdict(d: Difference, *, higher_is_better: bool, scale: float = 1.0, unit: str = "") -> str:
    """``gru vs vanilla: +4.12 points, 95% CI [+2.82, +5.42], p = 0.004: gru better, significant at 5%``.

    With a ``unit`` (points) two decimals; without (an MSE) three significant digits, whatever the scale. The
    interval is written as one (``±`` means a standard deviation everywhere in the reports).
    """
    level = f"{round((1 - LEVEL) * 100):g}%"

    def number(v: float) -> str:
        return f"{v * scale:+.2f}" if unit else f"{v * scale:+.3g}"

    unit = f" {unit}" if unit else ""
    head = f"{d.b} vs {d.a}: {number(d.diff)}{unit}"
    if d.reason is not None:
        return f"{head}; not tested ({d.reason})"
    text = f"{head}, {LEVEL:.0%} CI [{number(d.low)}, {number(d.high)}], p = {d.p:.2g}"
    if not d.significant:
        return f"{text}: not significant at {level}"
    better = d.b if (d.diff > 0) == higher_is_better else d.a
    return f"{text}: {better} better, significant at {level}"
