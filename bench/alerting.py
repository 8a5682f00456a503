"""Alerting on a replayed synthetic stream: detection delay of planted surges and false alerts on flat days,
the product's detector (``finance_monitor.surge.detect`` + ``episode_step``, the functions the alert service
calls) beside a naive peer, in the same run. No database or Django is needed.

    .venv/bin/python -m bench.alerting [--trials 200] [--flat-days 3000] [--seed 7]

Stream: hourly buckets, volume ~ Poisson(60) per hour, each document negative with probability 0.30. Flat
days count alerts (episodes that fire) per 30 days. Each planted surge starts after a warm baseline and lasts
6 hours; its delay is the number of buckets between the first surge bucket and the one that fires (0: the
first surge bucket itself; "missed" if not within the 6 hours). Peer: a fixed threshold on one bucket,
negative share > baseline share + 10 points (same baseline, same minimum volume and the same cool-down),
and for volume a bucket above 1.5 x the baseline mean.

Then the same on a stream whose volume follows the trading day (``DAY_PROFILE``: a quiet night, a peak at the
US open, mean 60/h): false volume alerts per 30 days and planted volume surges (x2 and x1.5 the hour's own
rate, starting at every hour of the day in turn), the volume test with a flat mean (``season`` 0, as before)
beside the same test with the hour-of-day expectation (``season`` 24, the product's default for hour buckets).
"""

import argparse
import math
import statistics
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from finance_monitor.surge import SHARE, VOLUME, Counts, Episode, SurgeConfig, detect, episode_step

BASE_SHARE = 0.30
BASE_RATE = 60
HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SURGE_HOURS = 6
COOLDOWN = timedelta(hours=6)


@dataclass(frozen=True)
class Surge:
    label: str
    share: float  # negative share during the surge
    volume: int | None  # fixed documents per hour during the surge (None: Poisson(rate))
    rate: float = BASE_RATE
    kind: str = SHARE


SURGES = (
    Surge("+15 points at exactly 50/h", BASE_SHARE + 0.15, 50),
    Surge("+15 points at Poisson(60)/h, >= 50", BASE_SHARE + 0.15, None),
    Surge("+15 points at exactly 80/h", BASE_SHARE + 0.15, 80),
    Surge("+20 points at exactly 50/h", BASE_SHARE + 0.20, 50),
    Surge("+10 points at Poisson(60)/h", BASE_SHARE + 0.10, None),
    Surge("volume x2 (Poisson(120)/h)", BASE_SHARE, None, rate=2 * BASE_RATE, kind=VOLUME),
    Surge("volume x1.5 (Poisson(90)/h)", BASE_SHARE, None, rate=1.5 * BASE_RATE, kind=VOLUME),
)


_SHAPE = [0.4 + 1.6 * math.exp(-(((h - 15) / 4) ** 2)) for h in range(24)]
DAY_PROFILE = [x * 24 / sum(_SHAPE) for x in _SHAPE]  # volume by hour of day, mean 1 (night 0.4x, 15h 2.7x)


def cyclic_buckets(rng, n: int, start: int = 0, factor: float = 1.0) -> list[Counts]:
    """Hourly buckets ``start``..``start + n`` of the trading-day stream, the volume times ``factor``."""
    out = []
    for i in range(start, start + n):
        volume = int(rng.poisson(BASE_RATE * DAY_PROFILE[i % 24] * factor))
        out.append(Counts(volume, int(rng.binomial(volume, BASE_SHARE))))
    return out


def flat_buckets(rng, n: int) -> list[Counts]:
    volumes = rng.poisson(BASE_RATE, n)
    return [Counts(int(v), int(rng.binomial(v, BASE_SHARE))) for v in volumes]


def surge_buckets(rng, surge: Surge) -> list[Counts]:
    out = []
    for _ in range(SURGE_HOURS):
        if surge.volume is not None:
            volume = surge.volume
        else:
            volume = int(rng.poisson(surge.rate))
            while surge.kind == SHARE and volume < 50:  # "at volume >= 50 per hour"
                volume = int(rng.poisson(surge.rate))
        out.append(Counts(volume, int(rng.binomial(volume, surge.share))))
    return out


class Product:
    def __init__(self, config: SurgeConfig) -> None:
        self.config = config
        self.name = f"product: binomial/Poisson, windows {','.join(map(str, config.windows))}"
        if config.season:
            self.name += f", season {config.season}"

    def fires(self, history: list[Counts], kind: str) -> bool:
        return any(f.kind == kind and f.significant for f in detect(history, self.config))


class Naive:
    name = "peer: share > base + 10 pts / volume > 1.5 x mean"

    def __init__(self, config: SurgeConfig) -> None:
        self.config = config

    def fires(self, history: list[Counts], kind: str) -> bool:
        current, base = history[-1], history[-1 - self.config.baseline_buckets : -1]
        base_volume = sum(b.volume for b in base)
        if current.volume < self.config.min_volume or base_volume < self.config.min_volume:
            return False
        if kind == SHARE:
            base_share = sum(b.negative for b in base) / base_volume
            return current.negative / current.volume > base_share + 0.10
        return current.volume > 1.5 * base_volume / len(base)


def replay(detector, buckets: list[Counts], start: int, kind: str) -> list[int]:
    """Indexes (from ``start``) of the buckets where an alert fires, with the product's cool-down."""
    state, fired = Episode(), []
    need = detector.config.history_buckets
    for i in range(start, len(buckets)):
        significant = detector.fires(buckets[max(0, i + 1 - need) : i + 1], kind)
        fire, state = episode_step(
            state, significant=significant, bucket_start=T0 + i * HOUR, cooldown=COOLDOWN
        )
        if fire:
            fired.append(i - start)
    return fired


def run(args) -> None:
    windows = tuple(int(w) for w in args.windows.split(","))
    config = SurgeConfig(significance=args.significance, windows=windows)
    warm = config.history_buckets
    seasonal = SurgeConfig(**{**config.__dict__, "season": 24})  # the product's default for hour buckets
    detectors = [Product(config), Product(seasonal), Naive(config)]
    print(
        f"config: baseline {config.baseline_buckets} buckets, significance {config.significance}, "
        f"min volume {config.min_volume}/bucket, windows {config.windows}, cool-down {COOLDOWN}"
    )
    # flat stream: one long replay, alerts per 30 days
    rng = np.random.default_rng(args.seed)
    flat = flat_buckets(rng, warm + args.flat_days * 24)
    print(f"\nflat stream: {args.flat_days} days of hourly buckets (false alerts per 30 days)")
    for detector in detectors:
        for kind in (SHARE, VOLUME):
            alerts = len(replay(detector, flat, warm, kind))
            print(f"  {detector.name:50s} {kind:6s} {alerts * 30 / args.flat_days:6.2f}  ({alerts} alerts)")
    # planted surges
    print(f"\nplanted surges: {args.trials} trials each, {SURGE_HOURS} h long (delay in buckets)")
    for surge in SURGES[: args.surges]:
        for detector in detectors:

            def trial_run(trial: int, detector=detector, surge=surge) -> list[int]:
                rng = np.random.default_rng([args.seed, trial, zlib.crc32(surge.label.encode())])
                buckets = flat_buckets(rng, warm) + surge_buckets(rng, surge)
                return replay(detector, buckets, warm, surge.kind)

            delays, within2, median, missed = detections(trial_run, args.trials)
            print(
                f"  {surge.label:36s} {detector.name:50s} within 2 buckets {within2:6.1%}  "
                f"median delay {median:3.1f}  max {max(delays, default=-1):2d}  missed {missed}"
            )


def detections(trial_run, trials: int) -> tuple[list[int], float, float, int]:
    """Planted-surge trials: each run's first alert's delay in buckets (none: missed); returns the delays, the
    share detected within two buckets, the median delay and the number missed."""
    delays, missed = [], 0
    for trial in range(trials):
        fired = trial_run(trial)
        if fired:
            delays.append(fired[0])
        else:
            missed += 1
    within2 = sum(d <= 2 for d in delays) / trials
    median = statistics.median(delays) if delays else float("nan")
    return delays, within2, median, missed


def run_cycle(args, config: SurgeConfig) -> None:
    """The trading-day stream (module docstring): the volume test with a flat mean beside the seasonal one."""
    warm = config.history_buckets
    detectors = [
        Product(SurgeConfig(**{**config.__dict__, "season": 0})),
        Product(SurgeConfig(**{**config.__dict__, "season": 24})),
        Naive(config),
    ]
    rng = np.random.default_rng([args.seed, 24])
    stream = cyclic_buckets(rng, warm + args.flat_days * 24)
    print(
        f"\ntrading-day stream: {args.flat_days} days, volume by hour x{min(DAY_PROFILE):.2f} to "
        f"x{max(DAY_PROFILE):.2f} of 60/h (false volume alerts per 30 days)"
    )
    for detector in detectors:
        alerts = len(replay(detector, stream, warm, VOLUME))
        print(f"  {detector.name:60s} {alerts * 30 / args.flat_days:6.2f}  ({alerts} alerts)")
    print(
        f"\nplanted volume surges on the trading-day stream: {args.trials} trials each, {SURGE_HOURS} h long"
    )
    for factor in (2.0, 1.5):
        for detector in detectors:

            def trial_run(trial: int, detector=detector, factor=factor) -> list[int]:
                rng = np.random.default_rng([args.seed, trial, int(factor * 10)])
                begin = warm + trial % 24  # every hour of the day in turn
                buckets = cyclic_buckets(rng, begin) + cyclic_buckets(rng, SURGE_HOURS, begin, factor)
                return replay(detector, buckets, begin, VOLUME)

            _delays, within2, median, missed = detections(trial_run, args.trials)
            print(
                f"  volume x{factor:<4} {detector.name:60s} within 2 buckets {within2:6.1%}  "
                f"median delay {median:3.1f}  missed {missed}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--surges", type=int, default=len(SURGES), help="only the first N planted surges")
    parser.add_argument("--flat-days", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--significance", type=float, default=SurgeConfig.significance)
    parser.add_argument("--windows", default=",".join(map(str, SurgeConfig.windows)), help="e.g. 1,2,3")
    parser.add_argument("--skip-flat", action="store_true", help="only the trading-day stream")
    args = parser.parse_args()
    if not args.skip_flat:
        run(args)
    windows = tuple(int(w) for w in args.windows.split(","))
    run_cycle(args, SurgeConfig(significance=args.significance, windows=windows))


if __name__ == "__main__":
    main()
