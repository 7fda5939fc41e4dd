"""Confidence intervals for the rates the checks report (accuracies, attack accuracies).

`wilson_interval` is the Wilson score interval of a binomial proportion: unlike the normal
approximation it stays inside [0, 1] and keeps a sensible width for small samples and rates
near 0 or 1, which is exactly where deletion requests of a few recordings land.
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


def wilson_interval(rate: float, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The 95 % (by default) Wilson interval of a proportion `rate` observed on `n` trials; None when n < 1."""
    if n < 1 or rate is None or not math.isfinite(rate):
        return None
    rate = min(max(float(rate), 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
