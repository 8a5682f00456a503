"""Surge statistics for alert rules: plain Python (no Django), so tests and ``bench/alerting.py`` drive
exactly what the product runs.

Two one-sided tests of the bucket being evaluated against the trailing baseline that precedes it:

- **share**: is the share of negative documents higher than the baseline's pooled negative share? An exact
  binomial upper tail, P(X >= k | n, p0), with k negative documents among n and p0 = baseline negatives /
  baseline volume.
- **volume**: are there more documents than the baseline predicts? An exact Poisson upper tail,
  P(X >= n | mu), mu = the baseline's volume per bucket (empty buckets count as zero) times the window length.
  With a ``season`` (buckets per cycle: 24 for hour buckets, the trading day; 7 for day buckets, the week)
  and a baseline of at least two cycles, mu instead sums, over the window's buckets, the baseline's mean
  volume at the same place in the cycle (the same hour of the day), since news volume follows the trading day
  and a flat mean fires on every busy morning; each such mean rests on a few buckets only (7 in a week of
  hours), so the tail is the negative binomial with mean mu and variance mu plus the variance of those means
  (mean / buckets each, a Poisson mean's own), not the Poisson's, which would fire too often.

Each test scans short windows ending at the evaluated bucket (the last 1, 2 and 3 buckets by default): a
sharp surge shows in one bucket, a moderate one only once two or three buckets are pooled. The smallest
p-value is Bonferroni-corrected for the number of windows tried, so ``significance`` stays the chance that
one evaluation of a flat stream fires. A window is tested only with at least ``min_volume`` documents per
bucket; a baseline with fewer than ``min_volume`` documents in all is not a baseline yet.

``episode_step`` is the cool-down: one alert per surge. A rule that fired stays quiet while the following
buckets stay significant (a surge is over at the first complete bucket where no window ending there is
significant, so up to two buckets after its last one with the default windows), and after the surge
ends a new one fires only once ``cooldown`` has passed since the last alert; a significant bucket inside
the cool-down joins the silenced episode.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scipy.stats import binom, nbinom, poisson

SHARE, VOLUME = "share", "volume"
KINDS = (SHARE, VOLUME)
DEFAULT_WINDOWS = (1, 2, 3)


@dataclass(frozen=True)
class Counts:
    volume: int
    negative: int


@dataclass(frozen=True)
class SurgeConfig:
    baseline_buckets: int = 168  # trailing buckets before the tested window (a week of hours)
    significance: float = 2e-3  # chance that one evaluation of a flat stream fires (per kind)
    min_volume: int = 30  # documents per bucket below which a window is not tested
    test_share: bool = True
    test_volume: bool = True
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    season: int = 0  # buckets per cycle for the volume test's expectation (0: a flat mean)

    @property
    def history_buckets(self) -> int:
        """How many buckets ``detect`` needs, oldest first, ending with the evaluated one."""
        return self.baseline_buckets + max(self.windows)


@dataclass(frozen=True)
class Finding:
    kind: str  # share or volume
    p_value: float  # Bonferroni-corrected over the windows tried
    significant: bool
    window: int  # buckets pooled in the most significant window
    volume: int  # documents in that window
    negative: int  # negative documents in that window
    observed: float  # share: negative share of the window; volume: documents per bucket in the window
    baseline: (
        float  # share: the baseline's pooled negative share; volume: the documents per bucket it expects
    )
    baseline_volume: int  # documents in the baseline


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    return float(binom.sf(k - 1, n, p))


def poisson_upper_tail(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu)."""
    if k <= 0:
        return 1.0
    return float(poisson.sf(k - 1, mu))


def _pool(buckets: Sequence[Counts]) -> Counts:
    return Counts(sum(b.volume for b in buckets), sum(b.negative for b in buckets))


def _windows(history: Sequence[Counts], config: SurgeConfig):
    """(w, window counts, baseline counts, baseline buckets) for each window with enough data."""
    for w in config.windows:
        if len(history) < w + 1:
            continue
        window = _pool(history[-w:])
        base_buckets = history[max(0, len(history) - w - config.baseline_buckets) : len(history) - w]
        baseline = _pool(base_buckets)
        if window.volume < config.min_volume * w or baseline.volume < config.min_volume:
            continue
        yield w, window, baseline, len(base_buckets)


def share_test(history: Sequence[Counts], config: SurgeConfig) -> Finding | None:
    """The negative-share test of the last bucket of ``history``; None when no window can be tested."""
    tried = []
    for w, window, baseline, _ in _windows(history, config):
        # a baseline with no negative document at all would make any negative one infinitely surprising
        p0 = min(max(baseline.negative, 0.5) / baseline.volume, 1.0)
        p = binomial_upper_tail(window.negative, window.volume, p0)
        tried.append((p, w, window, p0, baseline.volume))
    if not tried:
        return None
    p, w, window, p0, base_volume = min(tried, key=lambda t: (t[0], t[1]))
    p_value = min(1.0, p * len(tried))
    return Finding(
        kind=SHARE,
        p_value=p_value,
        significant=p_value < config.significance and window.negative / window.volume > p0,
        window=w,
        volume=window.volume,
        negative=window.negative,
        observed=window.negative / window.volume,
        baseline=p0,
        baseline_volume=base_volume,
    )


def _expected(history: Sequence[Counts], w: int, n_base: int, season: int) -> tuple[float, float]:
    """Documents the baseline predicts in the last ``w`` buckets, and the variance of that prediction itself
    (0 for a flat mean; the module says how)."""
    end = len(history) - w
    if season < 2 or n_base < 2 * season:
        return sum(b.volume for b in history[end - n_base : end]) / n_base * w, 0.0
    total = [0.5] * season  # half a document per place: a place never seen predicts a little, not nothing
    count = [0] * season
    for i in range(end - n_base, end):  # the place in the cycle: the bucket's index modulo the season
        total[i % season] += history[i].volume
        count[i % season] += 1
    means = [total[i % season] / count[i % season] for i in range(end, len(history))]
    spread = sum(mean / count[i % season] for mean, i in zip(means, range(end, len(history)), strict=True))
    return sum(means), spread


def count_upper_tail(k: int, mu: float, spread: float) -> float:
    """P(X >= k) for a count of mean ``mu`` itself uncertain by variance ``spread``: the negative binomial
    with that mean and variance ``mu + spread`` (Poisson when ``spread`` is 0)."""
    if spread <= 0:
        return poisson_upper_tail(k, mu)
    if k <= 0:
        return 1.0
    r = mu * mu / spread
    return float(nbinom.sf(k - 1, r, r / (r + mu)))


def volume_test(history: Sequence[Counts], config: SurgeConfig) -> Finding | None:
    """The volume test of the last bucket of ``history``; None when no window can be tested."""
    tried = []
    for w, window, baseline, n_base in _windows(history, config):
        expected, spread = _expected(history, w, n_base, config.season)
        rate = expected / w
        p = count_upper_tail(window.volume, expected, spread)
        tried.append((p, w, window, rate, baseline.volume))
    if not tried:
        return None
    p, w, window, rate, base_volume = min(tried, key=lambda t: (t[0], t[1]))
    p_value = min(1.0, p * len(tried))
    return Finding(
        kind=VOLUME,
        p_value=p_value,
        significant=p_value < config.significance,
        window=w,
        volume=window.volume,
        negative=window.negative,
        observed=window.volume / w,
        baseline=rate,
        baseline_volume=base_volume,
    )


def detect(history: Sequence[Counts], config: SurgeConfig) -> list[Finding]:
    """Every enabled test of the last bucket of ``history`` (oldest first) that could be run."""
    findings = []
    if config.test_share and (share := share_test(history, config)) is not None:
        findings.append(share)
    if config.test_volume and (volume := volume_test(history, config)) is not None:
        findings.append(volume)
    return findings


@dataclass(frozen=True)
class Episode:
    """Where a rule stands for one kind: inside a surge it has alerted on (or silenced), and when it last
    fired."""

    open: bool = False
    last_fired: datetime | None = None


def episode_step(
    state: Episode, *, significant: bool, bucket_start: datetime, cooldown: timedelta, complete: bool = True
) -> tuple[bool, Episode]:
    """(fire?, next state) for one evaluated bucket. A bucket still filling can open an episode (an early
    alert) but never close one: only a complete bucket back under the threshold ends a surge."""
    if not significant:
        return False, Episode(open=state.open and not complete, last_fired=state.last_fired)
    if state.open:
        return False, state
    if state.last_fired is not None and bucket_start - state.last_fired < cooldown:
        return False, Episode(open=True, last_fired=state.last_fired)
    return True, Episode(open=True, last_fired=bucket_start)
