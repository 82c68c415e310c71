"""Shared checks over every registered detector, then behavioural tests per detector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlctl.core.errors import NotFound, UsageError
from mlctl.detect.base import DEFAULT_DETECTOR, Detector, available_detectors, make_detector
from mlctl.detect.detectors.seasonal import estimate_period

NAMES = sorted(available_detectors())
# small settings so the slow detector (a forest refit) runs quickly in the shared checks
FAST = {"iforest": {"min_points": 40, "refit_every": 60, "history": 200, "n_estimators": 10}}


def make(name: str, **params: object) -> Detector:
    return make_detector(name, **{**FAST.get(name, {}), **params})


def series(n: int = 600, seed: int = 0) -> np.ndarray:
    """A daily-like pattern with noise, a spike and a level shift."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 10 + 3 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.3, n)
    x[n // 2] += 12
    x[int(n * 0.8) :] += 6
    return x


def test_registry_has_the_required_detectors() -> None:
    assert {"zscore", "seasonal", "forecast", "iforest", "changepoint", "ensemble"} <= set(NAMES)
    assert DEFAULT_DETECTOR == "ensemble"
    assert type(make_detector()).name == "ensemble"
    with pytest.raises(NotFound):
        make_detector("no-such-detector")


@pytest.mark.parametrize("name", NAMES)
def test_declared_params_are_documented_and_validated(name: str) -> None:
    cls = available_detectors()[name]
    assert cls.summary and cls.__doc__
    assert 0.0 < cls.default_threshold < 1.0
    for key, spec in cls.params.items():
        assert spec.doc, key
        assert isinstance(spec.default, spec.type), key
    with pytest.raises(UsageError):
        make_detector(name, no_such_parameter=1)
    for key, spec in cls.params.items():
        if spec.low is not None:
            with pytest.raises(UsageError):
                make_detector(name, **{key: spec.low - 1})
        if spec.type in (int, float):
            with pytest.raises(UsageError):
                make_detector(name, **{key: "not a number"})


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_online_and_leaves_the_same_state(name: str) -> None:
    x = series()
    a, b = make(name), make(name)
    batch = a.score(x[:400])
    online = np.array([b.update(v) for v in x[:400]])
    np.testing.assert_allclose(batch, online, rtol=0, atol=1e-9)
    # the state left behind is the same: continuing either way gives the same numbers
    np.testing.assert_allclose(a.score(x[400:]), [b.update(v) for v in x[400:]], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_score_one_does_not_learn_and_update_is_score_then_learn(name: str) -> None:
    x = series()
    a, b = make(name), make(name)
    a.score(x[:300])
    b.score(x[:300])
    first = a.score_one(x[300])
    assert a.score_one(x[300]) == first  # scoring twice changes nothing
    assert b.update(x[300]) == pytest.approx(first, abs=1e-12)
    a.learn_one(x[300])
    np.testing.assert_allclose(a.score(x[301:]), b.score(x[301:]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_prefix_causality(name: str) -> None:
    x = series()
    full = make(name).score(x)
    for cut in (57, 250, 451):
        np.testing.assert_allclose(make(name).score(x[:cut]), full[:cut], rtol=0, atol=1e-9)
    # a change in the future does not change the past
    y = x.copy()
    y[500:] += 100.0
    np.testing.assert_allclose(make(name).score(y)[:500], full[:500], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_in_range_and_finite(name: str) -> None:
    s = make(name).score(series())
    assert s.shape == (600,)
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert s.max() > 0  # the spike and the shift are seen at all


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_score_zero_and_are_not_learned(name: str) -> None:
    x = series()
    a, b = make(name), make(name)
    a.score(x[:300])
    b.score(x[:300])
    for bad in (math.nan, math.inf, -math.inf):
        assert a.update(bad) == 0.0
    np.testing.assert_allclose(a.score(x[300:]), b.score(x[300:]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_constant_series_scores_zero(name: str) -> None:
    s = make(name).score(np.full(400, 7.0))
    assert np.isfinite(s).all()
    assert (s == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_huge_values_stay_finite(name: str) -> None:
    x = series()
    x[200] = 1e300
    x[300] = -1e300
    x[400:] *= 1e150
    s = make(name).score(x)
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_fresh_with_the_same_params(name: str) -> None:
    x = series()
    d = make(name)
    before = d.score(x)
    c = d.clone()
    assert type(c) is type(d) and c.get_params() == d.get_params()
    np.testing.assert_allclose(c.score(x), before, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    x = series(seed=3)
    np.testing.assert_array_equal(make(name).score(x), make(name).score(x))


@pytest.mark.parametrize("name", NAMES)
def test_multivariate_input(name: str) -> None:
    x = series()
    quiet = 5 + 0.1 * np.random.default_rng(9).normal(size=600)
    both = np.column_stack([quiet, x])
    d = make(name)
    s = d.score(both)
    assert s.shape == (600,)
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    online = make(name)
    np.testing.assert_allclose(s, [online.update(row) for row in both], rtol=0, atol=1e-9)
    with pytest.raises(UsageError):
        d.update(np.array([1.0, 2.0, 3.0]))  # the stream's width is fixed by its first point
    # a NaN in one metric: the other metrics are still scored
    assert np.isfinite(d.update(np.array([math.nan, 10.0])))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "iforest"])
def test_columnwise_detectors_take_the_max_over_metrics(name: str) -> None:
    x = series()
    quiet = np.full(600, 5.0)
    alone = make_detector(name, suppress=0).score(x)
    joint = make_detector(name, suppress=0).score(np.column_stack([quiet, x]))
    np.testing.assert_allclose(joint, alone, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------ behaviour


def flat_then_spike(n: int = 400, at: int = 300) -> np.ndarray:
    x = 50 + np.random.default_rng(1).normal(0, 1.0, n)
    x[at] += 25
    return x


@pytest.mark.parametrize("name", ["zscore", "forecast", "seasonal", "ensemble"])
def test_a_spike_after_a_flat_stretch_scores_high(name: str) -> None:
    d = make_detector(name)
    s = d.score(flat_then_spike())
    assert s[300] >= d.default_threshold
    assert s[300] == s.max()
    assert (s[250:300] < d.default_threshold).all()


def test_iforest_flags_a_spike() -> None:
    d = make_detector("iforest", min_points=100, refit_every=100, n_estimators=50)
    s = d.score(flat_then_spike())
    assert s[300] == s[150:].max()
    assert s[300] > np.quantile(s[150:300], 0.99)


def test_suppression_reports_an_event_once() -> None:
    x = flat_then_spike()
    x[302] += 25  # a second, equal spike right after the first
    loud = make_detector("zscore", suppress=0).score(x)
    quiet = make_detector("zscore").score(x)
    assert loud[302] >= 0.8 and loud[300] >= 0.8
    assert quiet[300] >= 0.7  # reduced only by the largest noise surprise of the last `suppress` points
    assert quiet[302] < 0.3


def test_changepoint_catches_a_level_shift_and_ignores_a_single_spike() -> None:
    rng = np.random.default_rng(2)
    x = 20 + rng.normal(0, 1.0, 600)
    x[200] += 30  # one spike: a median of several points does not move
    x[400:] += 8  # a sustained shift
    d = make_detector("changepoint")
    s = d.score(x)
    assert s[195:205].max() < d.default_threshold
    assert s[400:410].max() >= d.default_threshold
    assert (s[300:400] < d.default_threshold).all()
    first = 400 + int(np.argmax(s[400:] >= d.default_threshold))
    assert first <= 400 + d.short // 2 + 1
    raw = make_detector("changepoint", suppress=0).score(x)
    assert raw[200] < 0.5 * raw[400:410].max()  # without suppression too: the spike barely moves the median


def seasonal_series(n: int, period: int = 50, seed: int = 4) -> np.ndarray:
    t = np.arange(n)
    base = np.where((t % period) < period // 2, 10.0, 0.0) + 2 * np.sin(2 * np.pi * t / period)
    return base + np.random.default_rng(seed).normal(0, 0.1, n)


def test_seasonal_repeated_pattern_is_not_flagged_but_a_break_is() -> None:
    x = seasonal_series(1200)
    d = make_detector("seasonal", suppress=0)
    s = d.score(x[:1000])
    assert d.models_ is not None and d.models_[0].period == 50
    assert (s[600:] < d.default_threshold).all()  # the square-ish wave's edges are expected
    # break the pattern: a cycle stays at its low level, inside the usual range of values
    y = x.copy()
    y[1010:1025] = y[1010 + 25 : 1025 + 25]
    s2 = make_detector("seasonal", suppress=0).score(y)
    assert s2[1010:1025].max() >= d.default_threshold
    # the robust z-score is blind to it: the values stay within the usual range
    z = make_detector("zscore", suppress=0).score(y)
    assert z[1010:1025].max() < make_detector("zscore").default_threshold


def test_estimate_period() -> None:
    x = seasonal_series(600, period=37)
    assert estimate_period(x, min_period=4, max_period=200, min_acf=0.3) == 37
    noise = np.random.default_rng(0).normal(size=600)
    assert estimate_period(noise, min_period=4, max_period=200, min_acf=0.3) == 0
    assert estimate_period(np.ones(600), min_period=4, max_period=200, min_acf=0.3) == 0


def test_ensemble_members_are_validated() -> None:
    with pytest.raises(UsageError):
        make_detector("ensemble", members="zscore,nope")
    with pytest.raises(UsageError):
        make_detector("ensemble", members="")
    with pytest.raises(UsageError):
        make_detector("ensemble", combine="median")
    d = make_detector("ensemble", members="zscore,forecast,changepoint", combine="max")
    assert np.isfinite(d.score(series())).all()


def test_ensemble_mean_is_the_mean_of_member_surprises() -> None:
    x = series()
    ens = make_detector("ensemble", members="zscore,forecast", suppress=0).score(x)
    zs = [make_detector(n, suppress=0).score(x) for n in ("zscore", "forecast")]
    surprise = [4 * s / (1 - s) for s in zs]  # back from score = z / (z + 4)
    mean = (surprise[0] + surprise[1]) / 2
    np.testing.assert_allclose(ens, mean / (mean + 4), rtol=1e-9, atol=1e-12)
