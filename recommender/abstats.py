"""The A/B statistics of an experiment, in plain Python (no Django): proportions with a Wilson 95% interval,
and the difference of two proportions with Newcombe's hybrid-score interval (built from the two Wilson
intervals; Newcombe 1998, method 10), which, unlike the normal approximation, stays inside [-1, 1] and
behaves at 0 or 100% and with small counts."""

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Proportion:
    successes: int
    trials: int
    rate: float | None  # None with no trials
    low: float | None
    high: float | None


def wilson(successes: int, trials: int, z: float = Z95) -> Proportion:
    """``successes`` of ``trials`` with its Wilson score interval."""
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError("successes must be from 0 to trials")
    if trials == 0:
        return Proportion(successes, trials, None, None, None)
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # the interval holds the rate: exactly 0 at no success and 1 at all (rounding gave 5.6e-17 for 0 of 3)
    low = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    high = 1.0 if successes == trials else max(p, min(1.0, centre + half))
    return Proportion(successes, trials, p, low, high)


@dataclass(frozen=True)
class Difference:
    value: float | None  # b's rate - a's rate
    low: float | None
    high: float | None


def difference(a: Proportion, b: Proportion) -> Difference:
    """``b - a`` with Newcombe's interval (None when an arm has no trials)."""
    if a.rate is None or b.rate is None:
        return Difference(None, None, None)
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    d = b.rate - a.rate
    low = d - math.sqrt((b.rate - b.low) ** 2 + (a.high - a.rate) ** 2)
    high = d + math.sqrt((b.high - b.rate) ** 2 + (a.rate - a.low) ** 2)
    return Difference(d, max(-1.0, low), min(1.0, high))
