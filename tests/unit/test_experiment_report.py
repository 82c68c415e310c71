"""The report's pieces: comparisons of a challenger with the control, the stopping rule, latency
quantiles from histogram buckets."""

from __future__ import annotations

import math

import pytest

from mlctl.core.errors import UsageError
from mlctl.serving.experiments.definition import new_experiment
from mlctl.serving.experiments.report import _quantile, compare, decide
from mlctl.serving.experiments.store import VariantStats


def stats_of(n: int, wins: float, sq: float | None = None) -> VariantStats:
    return VariantStats(assigned=n, trials=n, reward_sum=wins, reward_sq_sum=wins if sq is None else sq)


def test_binary_comparison_has_every_test_and_agrees_in_direction() -> None:
    exp = new_experiment("ab", "m", "a:50,b:50")
    c = compare(exp, stats_of(5000, 500), stats_of(5000, 650), alpha=0.05)
    assert c["difference"] == pytest.approx(0.03) and c["relative_lift"] == pytest.approx(0.3)
    assert c["sequential"]["reject"] and c["z_test"]["significant"] and c["probability_to_beat"] > 0.999
    assert 0 < c["minimum_detectable_effect"] < 0.03
    d = decide(exp, [{"variant": "b", **c}])
    assert d["status"] == "significant" and d["winner"] == "b"


def test_the_control_wins_when_every_significant_difference_favours_it() -> None:
    exp = new_experiment("ab", "m", "a:34,b:33,c:33")
    worse = [{"variant": v, **compare(exp, stats_of(5000, 650), stats_of(5000, 500), alpha=0.025)} for v in "bc"]
    assert decide(exp, worse)["winner"] == "a"
    mixed = [worse[0], {"variant": "c", **compare(exp, stats_of(5000, 650), stats_of(5000, 640), alpha=0.025)}]
    assert decide(exp, mixed)["status"] == "not_yet"


def test_no_outcomes_is_no_data_and_bad_binary_rewards_are_refused() -> None:
    exp = new_experiment("ab", "m", "a:50,b:50")
    c = compare(exp, VariantStats(), stats_of(10, 5), alpha=0.05)
    assert c["sequential"] is None and decide(exp, [{"variant": "b", **c}])["status"] == "no_data"
    with pytest.raises(UsageError, match="continuous"):
        compare(exp, stats_of(10, 25), stats_of(10, 5), alpha=0.05)


def test_continuous_rewards_use_the_means_test() -> None:
    exp = new_experiment("ab", "m", "a:50,b:50", reward="continuous")
    # 2,000 rewards each: mean 1.0 vs 1.2, variance about 1
    a = VariantStats(trials=2000, reward_sum=2000 * 1.0, reward_sq_sum=2000 * (1.0 + 1.0))
    b = VariantStats(trials=2000, reward_sum=2000 * 1.2, reward_sq_sum=2000 * (1.0 + 1.44))
    c = compare(exp, a, b, alpha=0.05)
    assert c["difference"] == pytest.approx(0.2) and c["sequential"]["reject"] and c["z_test"] is None
    assert c["probability_to_beat"] > 0.99


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    buckets = [(0.001, 0.0), (0.01, 50.0), (0.1, 99.0), (math.inf, 100.0)]
    assert _quantile(buckets, 0.5) == pytest.approx(0.01)
    assert _quantile(buckets, 0.25) == pytest.approx(0.001 + 0.009 * 0.5)
    assert _quantile(buckets, 0.995) == pytest.approx(0.1)  # in the +Inf bucket: its lower bound
    assert _quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
