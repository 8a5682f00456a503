"""The surge statistics (finance_monitor.surge, no database): exact tails on known values, the window scan,
minimum volumes, and the cool-down's episodes."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from finance_monitor.surge import (
    SHARE,
    VOLUME,
    Counts,
    Episode,
    SurgeConfig,
    binomial_upper_tail,
    count_upper_tail,
    detect,
    episode_step,
    poisson_upper_tail,
    share_test,
    volume_test,
)


def test_binomial_tail_on_known_values():
    assert binomial_upper_tail(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_upper_tail(0, 10, 0.3) == 1.0
    assert binomial_upper_tail(1, 10, 0.3) == pytest.approx(1 - 0.7**10)
    exact = sum(math.comb(50, i) * 0.3**i * 0.7 ** (50 - i) for i in range(23, 51))
    assert binomial_upper_tail(23, 50, 0.3) == pytest.approx(exact, rel=1e-9)
    assert exact == pytest.approx(
        0.01228, abs=1e-5
    )  # +15 points at 50 documents: 2.3 sigma, not enough alone


def test_poisson_tail_on_known_values():
    assert poisson_upper_tail(1, 2.0) == pytest.approx(1 - math.exp(-2.0))
    exact = 1 - sum(math.exp(-60) * 60**i / math.factorial(i) for i in range(90))
    assert poisson_upper_tail(90, 60.0) == pytest.approx(exact, rel=1e-6)


def flat(n: int, volume: int = 60, negative: int = 18) -> list[Counts]:
    return [Counts(volume, negative) for _ in range(n)]


CONFIG = SurgeConfig(baseline_buckets=24, significance=0.002, min_volume=30)


def test_share_surge_is_found_in_the_window_that_shows_it_best():
    sharp = share_test(flat(26) + [Counts(60, 40)], CONFIG)
    assert sharp.significant and sharp.window == 1 and sharp.baseline == pytest.approx(0.3)
    assert sharp.observed == pytest.approx(40 / 60)
    # Bonferroni over the three windows tried
    assert sharp.p_value == pytest.approx(3 * binomial_upper_tail(40, 60, 0.3))
    # a moderate surge shows only when three buckets are pooled
    moderate = share_test(flat(24) + [Counts(60, 27)] * 3, CONFIG)
    assert moderate.significant and moderate.window == 3
    assert not share_test(flat(26) + [Counts(60, 27)], CONFIG).significant
    # fewer negatives than the baseline is never a surge, however unlikely
    assert not share_test(flat(26) + [Counts(60, 0)], CONFIG).significant


def test_minimum_volume_and_missing_baseline_mean_no_test():
    assert share_test(flat(26) + [Counts(20, 20)], CONFIG).window > 1  # the bucket alone is too small
    assert share_test(flat(24, 0, 0) + [Counts(20, 20)] * 3, CONFIG) is None  # and no baseline at all
    assert detect([Counts(100, 90)], CONFIG) == []  # no history


def test_volume_surge_against_the_trailing_mean_rate():
    base = flat(20) + [Counts(0, 0)] * 4  # empty hours count: the rate is 50 per bucket
    found = volume_test(base + flat(2) + [Counts(120, 36)], CONFIG)
    assert found.significant and found.kind == VOLUME and found.baseline == pytest.approx(50.0)
    assert not volume_test(flat(27), CONFIG).significant
    only_share = SurgeConfig(baseline_buckets=24, test_volume=False)
    assert [f.kind for f in detect(flat(26) + [Counts(120, 100)], only_share)] == [SHARE]


T = datetime(2026, 12, 1, tzinfo=UTC)
H = timedelta(hours=1)


def step(state, significant, hours, complete=True, cooldown=timedelta(hours=6)):
    return episode_step(
        state, significant=significant, bucket_start=T + hours * H, cooldown=cooldown, complete=complete
    )


def test_one_alert_per_surge_and_the_cooldown_after_it():
    fired, state = step(Episode(), True, 0)
    assert fired and state == Episode(open=True, last_fired=T)
    fired, state = step(state, True, 1)  # the surge goes on: quiet
    assert not fired and state.open
    fired, state = step(state, False, 2, complete=False)  # a bucket still filling ends nothing
    assert not fired and state.open
    fired, state = step(state, False, 2)  # back under the threshold: the surge is over
    assert not fired and not state.open
    fired, state = step(state, True, 3)  # a new surge inside the cool-down joins the silenced episode
    assert not fired and state.open and state.last_fired == T
    fired, state = step(state, True, 7)  # still going after the cool-down: still the same episode
    assert not fired
    _, state = step(state, False, 8)
    fired, state = step(state, True, 9)  # over, and the cool-down has passed: a new alert
    assert fired and state.last_fired == T + 9 * H


def test_a_filling_bucket_may_alert_early():
    fired, state = step(Episode(), True, 0, complete=False)
    assert fired
    fired, state = step(state, True, 0)  # the same bucket, now complete: no second alert
    assert not fired and state.open


# A week of hours whose volume follows the trading day: 10 an hour at night, 100 from 13:00 to 20:00.
DAY = [100 if 13 <= h <= 20 else 10 for h in range(24)]


def _cycle(hours: int, last: int | None = None) -> list[Counts]:
    """``hours`` buckets of the trading day (oldest first), the last at hour 14 with ``last`` documents."""
    volumes = [DAY[(h + 15 - hours) % 24] for h in range(hours)]  # ends at hour 14
    if last is not None:
        volumes[-1] = last
    return [Counts(v, v * 3 // 10) for v in volumes]


def test_the_volume_test_expects_the_hours_own_volume_with_a_season():
    flat, daily = SurgeConfig(test_share=False), SurgeConfig(test_share=False, season=24)
    usual = _cycle(flat.history_buckets)
    assert usual[-1].volume == 100
    # a busy hour at its usual level: a flat mean (about 40 an hour) calls it a surge, the hour's own does not
    [finding] = detect(usual, flat)
    assert finding.significant and finding.baseline == pytest.approx(40, abs=1)
    [finding] = detect(usual, daily)
    assert not finding.significant and finding.baseline == pytest.approx(100, abs=1)
    # twice the hour's usual volume is a surge for both
    [finding] = detect(_cycle(daily.history_buckets, last=200), daily)
    assert finding.significant and finding.observed == 200
    # under two cycles of baseline, the flat mean stands (the hour's mean would rest on one bucket)
    short = SurgeConfig(test_share=False, season=24, baseline_buckets=47)
    assert detect(_cycle(short.history_buckets), short)[0].baseline == pytest.approx(
        detect(_cycle(short.history_buckets), SurgeConfig(test_share=False, baseline_buckets=47))[0].baseline
    )


def test_the_seasonal_tail_allows_for_the_few_buckets_behind_each_hours_mean():
    assert count_upper_tail(130, 100.0, 0.0) == pytest.approx(poisson_upper_tail(130, 100.0))
    # seven buckets behind a mean of 100: variance 100 + 100 / 7, a wider tail than the Poisson's
    wider = count_upper_tail(130, 100.0, 100 / 7)
    assert poisson_upper_tail(130, 100.0) < wider < 10 * poisson_upper_tail(130, 100.0)
    assert count_upper_tail(0, 5.0, 1.0) == 1.0
