"""Shared checks over every registered detector, then behavioural tests per detector."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mlctl.core.errors import NotFound, UsageError
from mlctl.detect.base import DEFAULT_DETECTOR, Detector, available_detectors, make_detector
from mlctl.detect.detectors.seasonal import estimate_period

# the built-in detectors (tests elsewhere register test-only ones in the same registry)
NAMES = sorted(n for n, c in available_detectors().items() if c.__module__.startswith("mlctl.detect.detectors"))
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
    assert {"zscore", "seasonal", "forecast", "iforest", "changepoint", "ensemble", "context"} <= set(NAMES)
    assert DEFAULT_DETECTOR == "context"
    assert type(make_detector()).name == "context"
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


FLOAT_MAX = float(np.finfo(float).max)


def near_the_float_limit() -> list[np.ndarray]:
    """Series at the edge of float64: sums and differences of two points overflow."""
    rng = np.random.default_rng(7)
    spikes = series()
    spikes[200], spikes[300], spikes[301] = FLOAT_MAX, -FLOAT_MAX, FLOAT_MAX
    both_signs = rng.uniform(-1.0, 1.0, 600) * 0.99 * FLOAT_MAX
    high = 0.9 * FLOAT_MAX + rng.normal(0.0, 1e306, 600)
    high[400] = -FLOAT_MAX
    return [spikes, both_signs, high, np.full(600, FLOAT_MAX), np.column_stack([both_signs, high])]


@pytest.mark.parametrize("name", NAMES)
def test_values_near_the_float_limit_warn_nothing_and_score_in_range(name: str) -> None:
    for x in near_the_float_limit():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no numpy overflow warning may leak (to the CLI's stderr)
            s = make(name).score(x)
        assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()


@pytest.mark.parametrize("name", NAMES)
def test_scores_do_not_depend_on_the_scale_up_to_the_float_limit(name: str) -> None:
    x = series()
    big = x * 2.0**1016  # about 1e307: differences of two points overflow without care
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(make(name).score(big), make(name).score(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["zscore", "forecast", "seasonal", "ensemble", "context"])
def test_a_spike_to_the_float_limit_scores_high(name: str) -> None:
    for sign in (1.0, -1.0):
        x = flat_then_spike()
        x[300] = sign * FLOAT_MAX
        d = make_detector(name)
        assert d.score(x)[300] >= d.default_threshold
        # and a spike of the opposite sign from a series near the limit: their difference is no float
        y = flat_then_spike() * 1e306 * sign
        y[300] = -sign * FLOAT_MAX
        assert make_detector(name).score(y)[300] >= d.default_threshold


def test_uniform_noise_near_the_float_limit_is_not_a_false_alarm() -> None:
    x = np.random.default_rng(0).uniform(-1.0, 1.0, 400) * 0.99 * FLOAT_MAX  # |x - median| overflowed to inf
    d = make_detector("zscore", suppress=0)
    assert d.score(x)[40:].max() < d.default_threshold


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


# ------------------------------------------------------------------------ context novelty


def sine_with_spike(n: int = 200, at: int = 60, length: int = 6, seed: int = 11) -> np.ndarray:
    """A 1 s metric: 40 + 4 sin (period 30 points), noise 0.4, and a +45 spike of ``length`` points."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 40 + 4 * np.sin(2 * np.pi * t / 30) + rng.normal(0, 0.4, n)
    x[at : at + length] += 45
    return x


def test_context_flags_a_spike_after_noise_at_full_score() -> None:
    d = make_detector("context")
    s = d.score(flat_then_spike())
    assert s[300] == 1.0 == s.max()  # a break of the known range
    # pure noise still makes the odd new move between its rarest levels, but seldom
    assert np.mean(s[100:300] >= d.default_threshold) <= 0.02


def test_context_flags_a_spike_once_and_then_quiets_down() -> None:
    d = make_detector("context")
    x = sine_with_spike()
    s = d.score(x)
    thr = d.default_threshold
    assert s[60] >= thr and s[60] == s.max()
    assert (s[66:72] < thr).all()  # the alert can resolve right after the spike
    assert (s[61 : 61 + d.suppress] == 0).all()  # one event, one report
    loud = make_detector("context", suppress=0).score(x)
    assert (loud[61:66] < thr).all()  # the rest of the spike is no longer new: its levels were just seen


def test_context_flags_a_bump_above_a_daily_pattern() -> None:
    t = np.arange(2016)
    x = 0.5 + 0.2 * np.sin(2 * np.pi * t / 288) + np.random.default_rng(5).normal(0, 0.01, 2016)
    x[1500:1506] += 0.45
    s = make_detector("context").score(x)
    thr = make_detector("context").default_threshold
    assert s[1500] >= thr
    assert (s[1000:1500] < thr).all()  # the daily pattern itself is known by then


def test_context_repeated_pattern_is_learned_but_a_new_move_inside_the_range_is_flagged() -> None:
    t = np.arange(1200)
    x = (t % 16) / 2.0 + np.random.default_rng(4).normal(0, 0.02, 1200)  # a ramp over 8 levels, repeated
    d = make_detector("context", suppress=0)
    assert (d.score(x[:1000])[200:] < d.default_threshold).all()
    y = x.copy()
    y[1003:1008] = y[1003 + 8 : 1008 + 8]  # skip half a ramp: values stay in range, the move is new
    s = make_detector("context", suppress=0).score(y)
    assert s[1003] >= d.default_threshold
    assert make_detector("context", suppress=0).score(x)[1000:].max() < d.default_threshold
    # the robust z-score is blind to it: the values stay in the usual range
    assert make_detector("zscore", suppress=0).score(y)[1003:1010].max() < make_detector("zscore").default_threshold


def test_context_new_transition_score_depends_on_how_settled_the_level_was() -> None:
    # level 0 always went back to level 0 (many departures, one successor): a new successor is surprising
    settled = np.concatenate([np.tile([0.0, 0.0, 0.0, 7.0], 50), [0.0, 3.5]])
    s = make_detector("context", bins=8, suppress=0, min_points=10).score(settled)
    assert s[-1] >= 0.9
    # the same new move from a level that keeps going somewhere new scores low
    rng = np.random.default_rng(0)
    wandering = rng.permutation(np.repeat(np.arange(8.0), 4))
    wandering = np.concatenate([[0.0, 7.0], wandering])
    d = make_detector("context", bins=8, suppress=0, min_points=4)
    out = d.score(wandering)
    assert out.max() < 0.9


def test_context_range_growth_relevels_the_memory_and_memory_is_bounded() -> None:
    d = make_detector("context", memory=300, suppress=0)
    x = series(2000, seed=1)
    d.score(x)
    assert d.models_ is not None
    model = d.models_[0]
    assert len(model.hist) == 300
    # the counts rebuilt after the range grows equal those of a fresh model fed the kept history
    before = (model.lo, model.hi)
    d.update(model.hi + 10 * (model.hi - model.lo))
    assert (model.lo, model.hi) != before
    h = np.array(list(model.hist))
    (grid,) = model.grids
    levels = np.clip(((h - model.lo) / (model.hi - model.lo) * grid.bins).astype(int), 0, grid.bins - 1)
    pairs = set(zip(levels[:-1].tolist(), levels[1:].tolist(), strict=True))
    assert grid.seen == {a * grid.bins + b for a, b in pairs}
    assert grid.out == np.bincount(levels[:-1], minlength=grid.bins).tolist()
    assert grid.succ == [sum(1 for a, _ in pairs if a == lvl) for lvl in range(grid.bins)]
    assert grid.prev == levels[-1]


def test_context_validates_params() -> None:
    with pytest.raises(UsageError):
        make_detector("context", bins=1)
    with pytest.raises(UsageError):
        make_detector("context", tolerance=-0.1)
    with pytest.raises(UsageError, match="bins - spread"):
        make_detector("context", bins=4, spread=3)
    with pytest.raises(UsageError):
        make_detector("context", spread=17)
    with pytest.raises(UsageError):
        make_detector("context", suppress_from=1.5)
    with pytest.raises(UsageError):
        make_detector("context", suppress_from=-0.1)


def test_context_defaults() -> None:
    d = make_detector("context")
    assert d.get_params() == {
        "bins": 7,
        "spread": 0,
        "tolerance": 0.1,
        "suppress": 30,
        "suppress_from": 0.166,
        "min_points": 30,
        "memory": 20_000,
    }
    # a report is what the default threshold flags: it starts the quiet period
    assert d.suppress_from == d.default_threshold
    d.update(1.0)
    assert d.models_ is not None and [g.bins for g in d.models_[0].grids] == [7]


def test_context_spread_averages_the_transition_scores_of_several_level_counts() -> None:
    d = make_detector("context", bins=6, spread=2, suppress=0)
    x = series(800, seed=3)
    d.score(x[:500])
    assert d.models_ is not None
    model = d.models_[0]
    assert sorted(g.bins for g in model.grids) == [4, 5, 6, 7, 8]
    # every grid shares the range; each alone is the single-count detector with those levels
    singles = {k: make_detector("context", bins=k, suppress=0) for k in (4, 5, 6, 7, 8)}
    for single in singles.values():
        single.score(x[:500])
    for v in x[500:]:
        if model.outside(v):
            expected = 1.0
        else:
            expected = float(np.mean([single.score_one(v) for single in singles.values()]))
        assert d.update(v) == pytest.approx(expected, abs=1e-12)
        for single in singles.values():
            single.learn_one(v)


def test_context_spread_keeps_the_detector_contract() -> None:
    x = series()
    full = make_detector("context", spread=2).score(x)
    np.testing.assert_allclose(make_detector("context", spread=2).score(x[:250]), full[:250], rtol=0, atol=1e-12)
    online = make_detector("context", spread=2)
    np.testing.assert_allclose([online.update(v) for v in x], full, rtol=0, atol=1e-12)
    assert np.isfinite(full).all() and (full >= 0).all() and (full <= 1).all() and full.max() == 1.0
    assert (make_detector("context", spread=2).score(np.full(300, 7.0)) == 0).all()


def test_context_suppress_from_decides_which_reports_start_the_quiet_period() -> None:
    # a ramp over 8 levels repeated, then half a ramp skipped: a new move inside the range, scoring below 1
    t = np.arange(1200)
    x = (t % 16) / 2.0 + np.random.default_rng(4).normal(0, 0.02, 1200)
    x[1003:1008] = x[1003 + 8 : 1008 + 8]
    loud = make_detector("context", suppress=0).score(x)
    first = 1003 + int(np.argmax(loud[1003:1010] > 0))
    assert 0.166 <= loud[first] < 1.0
    later = loud[first + 1 : first + 30]
    assert later.max() > 0  # the same event goes on making new moves
    quiet = make_detector("context").score(x)  # suppress_from 0.166: the first new move is a report
    assert quiet[first] == loud[first] and (quiet[first + 1 : first + 30] == 0).all()
    high = make_detector("context", suppress_from=0.99).score(x)  # not a report at 0.99: nothing is quieted
    np.testing.assert_array_equal(high[first : first + 30], loud[first : first + 30])


def test_context_a_first_break_of_the_range_is_reported_inside_a_quiet_period() -> None:
    x = flat_then_spike()  # noise makes a new move at 273 (a report), then a spike breaks the range at 300
    s = make_detector("context").score(x)
    assert 0.166 <= s[273] < 1.0 and (s[274:300] == 0).all()
    assert s[300] == 1.0  # a break is news even 27 points into the quiet period of a lesser report
    y = x.copy()
    y[310] += 60  # a second, larger break: the same event, quiet
    t = make_detector("context").score(y)
    assert t[300] == 1.0 and (t[301:340] == 0).all()
