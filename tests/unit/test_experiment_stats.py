"""The statistics of A/B experiments (mlctl.serving.experiments.stats), checked against independent
references (scipy, statsmodels, numerical integration, seeded simulations) and their own symmetries."""

from __future__ import annotations

import json
import math

import pytest

from mlctl.core.errors import UsageError
from mlctl.serving.experiments import stats
from mlctl.serving.experiments.stats import (
    SequentialMonitor,
    minimum_detectable_effect,
    msprt_means,
    msprt_proportions,
    normal_ppf,
    probability_to_beat,
    probability_to_beat_means,
    sample_size_per_arm,
    two_proportion_ztest,
)


def _f(value: float | None) -> float:
    """A value the case defines (not None)."""
    assert value is not None
    return value


def _mixture_lr(diff: float, var: float, tau: float, theta0: float = 0.0) -> float:
    """The normal-mixture likelihood ratio by numerical integration over the mixing distribution."""
    integrate = pytest.importorskip("scipy.integrate")

    def density(x: float, mean: float, v: float) -> float:
        return math.exp(-((x - mean) ** 2) / (2 * v)) / math.sqrt(2 * math.pi * v)

    def integrand(theta: float) -> float:
        return density(diff, theta0 + theta, var) * density(theta, 0.0, tau * tau)

    num, _ = integrate.quad(integrand, -12 * tau, 12 * tau, epsabs=0, epsrel=1e-11, limit=400,
                            points=[diff - theta0])
    return num / density(diff, theta0, var)


# ---------------------------------------------------------------------------------------------- normal


@pytest.mark.parametrize(("p", "expected"), [
    (0.975, 1.959963984540054),
    (0.95, 1.6448536269514722),
    (0.995, 2.5758293035489004),
    (0.8, 0.8416212335729143),
    (0.999, 3.090232306167813),
    (0.5, 0.0),
    (1e-10, -6.361340902404056),
])
def test_normal_ppf_known_quantiles(p: float, expected: float) -> None:
    assert normal_ppf(p) == pytest.approx(expected, abs=1e-9)
    if p > 1e-3:  # 1 - p is exact enough in floating point only away from the tails
        assert normal_ppf(1 - p) == pytest.approx(-expected, abs=1e-9)


def test_normal_ppf_matches_scipy_and_inverts_the_cdf() -> None:
    norm = pytest.importorskip("scipy.stats").norm
    for i in range(1, 500):
        p = i / 500
        assert normal_ppf(p) == pytest.approx(norm.ppf(p), rel=1e-12, abs=1e-12)
        assert stats.normal_cdf(normal_ppf(p)) == pytest.approx(p, rel=1e-12)
    for p in (1e-300, 1e-50, 1e-20):
        assert normal_ppf(p) == pytest.approx(norm.ppf(p), rel=1e-12)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_normal_ppf_outside_the_open_interval_is_a_usage_error(p: float) -> None:
    with pytest.raises(UsageError):
        normal_ppf(p)


# ---------------------------------------------------------------------------------------------- z-test


def test_ztest_textbook_value() -> None:
    r = two_proportion_ztest(100, 1000, 130, 1000)
    pooled = 230 / 2000
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert r.z == pytest.approx(z)
    assert r.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    half = 1.959963984540054 * math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.03 - half, 0.03 + half))
    assert r.difference == pytest.approx(0.03) and r.significant


@pytest.mark.parametrize("case", [(100, 1000, 130, 1000), (7, 90, 31, 210), (480, 1000, 455, 1000), (1, 30, 0, 12)])
def test_ztest_matches_statsmodels(case: tuple[int, int, int, int]) -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    sa, na, sb, nb = case
    r = two_proportion_ztest(sa, na, sb, nb, alpha=0.1)
    z, p = proportion.proportions_ztest([sb, sa], [nb, na])
    assert r.z == pytest.approx(z, rel=1e-10)
    assert r.p_value == pytest.approx(p, rel=1e-10)
    low, high = proportion.confint_proportions_2indep(sb, nb, sa, na, method="wald", compare="diff", alpha=0.1)
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), rel=1e-10)


def test_ztest_swapping_the_arms_flips_the_sign() -> None:
    ab, ba = two_proportion_ztest(40, 500, 61, 480), two_proportion_ztest(61, 480, 40, 500)
    assert ab.z == pytest.approx(-_f(ba.z)) and ab.difference == pytest.approx(-_f(ba.difference))
    assert ab.p_value == pytest.approx(ba.p_value)
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-_f(ba.ci_high), -_f(ba.ci_low)))


@pytest.mark.parametrize("case", [(0, 0, 0, 0), (0, 0, 5, 10), (0, 100, 0, 100), (100, 100, 50, 50)])
def test_ztest_without_information_has_p_one(case: tuple[int, int, int, int]) -> None:
    r = two_proportion_ztest(*case)
    assert r.p_value == 1.0 and r.z is None and not r.significant
    assert r.ci_low is None and r.ci_high is None
    json.dumps(r.to_dict(), allow_nan=False)


def test_ztest_degenerate_arms_keep_the_test_but_not_the_interval() -> None:
    r = two_proportion_ztest(0, 100, 100, 100)
    assert r.z is not None and r.z > 10 and r.significant
    assert r.ci_low is None  # an unpooled standard error of 0 gives no interval


@pytest.mark.parametrize(("args", "kwargs"), [
    ((-1, 10, 1, 10), {}), ((1, 10, 11, 10), {}), ((1, -10, 1, 10), {}), ((1.5, 10, 1, 10), {}),
    ((True, 10, 1, 10), {}), ((1, 10, 1, 10), {"alpha": 0.0}), ((1, 10, 1, 10), {"alpha": 1.0}),
    ((1, 10, 1, 10), {"alpha": -0.2}),
])
def test_invalid_counts_and_alpha_are_usage_errors(args: tuple, kwargs: dict) -> None:
    for fn in (two_proportion_ztest, msprt_proportions):
        with pytest.raises(UsageError) as info:
            fn(*args, **kwargs)
        assert "\n" not in info.value.message
    if not kwargs:
        with pytest.raises(UsageError):
            probability_to_beat(*args)


# ---------------------------------------------------------------------------------------------- mSPRT


def test_msprt_equals_the_mixture_integral_with_unequal_arms() -> None:
    r = msprt_means(1.0, 4.0, 300, 1.4, 9.0, 700, tau=0.3)
    var = 4.0 / 300 + 9.0 / 700
    assert r.se == pytest.approx(math.sqrt(var))
    assert r.likelihood_ratio == pytest.approx(_mixture_lr(0.4, var, 0.3), rel=1e-8)
    assert r.p_value == pytest.approx(min(1.0, 1 / r.likelihood_ratio))


def test_msprt_with_equal_arms_is_the_papers_paired_form() -> None:
    n, var_a, var_b, tau, d = 800, 2.0, 3.0, 0.2, 0.25
    r = msprt_means(0.0, var_a, n, d, var_b, n, tau=tau)
    v = var_a + var_b
    paper = math.sqrt(v / (v + n * tau**2)) * math.exp(n**2 * tau**2 * d**2 / (2 * v * (v + n * tau**2)))
    assert r.likelihood_ratio == pytest.approx(paper, rel=1e-12)


def test_msprt_interval_ends_where_the_shifted_test_rejects() -> None:
    r = msprt_means(0.0, 1.0, 400, 0.3, 1.5, 600, alpha=0.1, tau=0.25)
    var = 1.0 / 400 + 1.5 / 600
    for end in (_f(r.ci_low), _f(r.ci_high)):
        assert _mixture_lr(0.3, var, 0.25, theta0=end) == pytest.approx(1 / 0.1, rel=1e-7)
    assert _f(r.ci_low) < 0.3 < _f(r.ci_high)


def test_msprt_proportions_pools_for_the_test_and_not_for_the_interval() -> None:
    r = msprt_proportions(90, 1000, 140, 1200, tau=0.02)
    pooled = 230 / 2200
    var0 = pooled * (1 - pooled) * (1 / 1000 + 1 / 1200)
    assert r.se == pytest.approx(math.sqrt(var0))
    d = 140 / 1200 - 90 / 1000
    assert r.likelihood_ratio == pytest.approx(_mixture_lr(d, var0, 0.02), rel=1e-8)
    var1 = 0.09 * 0.91 / 1000 + (140 / 1200) * (1 - 140 / 1200) / 1200
    half = math.sqrt(var1 * (var1 + 0.02**2) / 0.02**2 * (2 * math.log(20) + math.log(1 + 0.02**2 / var1)))
    assert (r.ci_low, r.ci_high) == pytest.approx((d - half, d + half))


def test_msprt_default_tau_and_decision() -> None:
    r = msprt_proportions(1000, 10000, 1150, 10000)
    assert r.tau == pytest.approx(stats.DEFAULT_TAU_SD * math.sqrt(0.1075 * 0.8925))
    assert r.reject and r.p_value <= 0.05 and r.likelihood_ratio >= 20
    weak = msprt_proportions(100, 1000, 130, 1000)
    assert not weak.reject and weak.p_value > 0.05
    assert two_proportion_ztest(100, 1000, 130, 1000).significant  # the fixed test is more eager
    m = msprt_means(1.0, 4.0, 100, 1.0, 4.0, 300)
    assert m.tau == pytest.approx(0.2)


def test_msprt_swapping_the_arms_mirrors_the_result() -> None:
    ab, ba = msprt_proportions(40, 500, 61, 480), msprt_proportions(61, 480, 40, 500)
    assert ab.likelihood_ratio == pytest.approx(ba.likelihood_ratio) and ab.reject == ba.reject
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-_f(ba.ci_high), -_f(ba.ci_low)))


@pytest.mark.parametrize("case", [(0, 0, 0, 0), (0, 0, 3, 10), (0, 50, 0, 70), (20, 20, 30, 30)])
def test_msprt_without_information_has_no_evidence(case: tuple[int, int, int, int]) -> None:
    r = msprt_proportions(*case)
    assert r.likelihood_ratio == 1.0 and r.p_value == 1.0 and not r.reject
    json.dumps(r.to_dict(), allow_nan=False)
    assert msprt_means(1.0, 0.0, 10, 1.0, 0.0, 10).p_value == 1.0


def test_msprt_overwhelming_evidence_stays_finite_in_json() -> None:
    r = msprt_means(0.0, 1.0, 10**6, 1.0, 1.0, 10**6)
    assert r.reject and r.p_value == 0.0 and math.isinf(r.likelihood_ratio)
    doc = r.to_dict()
    assert doc["likelihood_ratio"] is None and doc["log_likelihood_ratio"] > 1000
    json.dumps(doc, allow_nan=False)


@pytest.mark.parametrize("kwargs", [{"tau": 0.0}, {"tau": -1.0}, {"tau": math.inf}, {"alpha": 2.0}])
def test_msprt_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        msprt_means(0.0, 1.0, 10, 0.1, 1.0, 10, **kwargs)
    with pytest.raises(UsageError):
        msprt_means(0.0, -1.0, 10, 0.1, 1.0, 10)


def test_monitor_keeps_the_running_minimum_and_the_first_stop() -> None:
    monitor = SequentialMonitor(alpha=0.05)
    counts = [(10, 100, 14, 100), (25, 250, 45, 250), (50, 500, 95, 500), (100, 1000, 150, 1000),
              (150, 1500, 190, 1500)]
    previous = None
    for i, look in enumerate(counts, 1):
        state = monitor.look_proportions(*look)
        assert state.looks == i
        if previous is not None:
            assert state.p_value <= previous.p_value
            assert _f(state.ci_low) >= _f(previous.ci_low) and _f(state.ci_high) <= _f(previous.ci_high)
        previous = state
    assert state.reject and state.stopped_at_look is not None
    first = state.stopped_at_look
    assert monitor.state().stopped_at_look == first
    assert (state.stopped_at_n_a, state.stopped_at_n_b) == counts[first - 1][1::2]
    assert monitor.tau_ == pytest.approx(stats.DEFAULT_TAU_SD * math.sqrt(0.12 * 0.88))  # frozen at look 1
    json.dumps(state.to_dict(), allow_nan=False)
    with pytest.raises(UsageError):
        monitor.observe(msprt_proportions(1, 10, 2, 10, alpha=0.1))


def _cumulative_conversions(rng, experiments: int, per_arm: int, step: int, rate_a: float, rate_b: float):
    conv_a = rng.random((experiments, per_arm)) < rate_a
    conv_b = rng.random((experiments, per_arm)) < rate_b
    looks = list(range(step, per_arm + 1, step))
    idx = [n - 1 for n in looks]
    return looks, conv_a.cumsum(axis=1)[:, idx], conv_b.cumsum(axis=1)[:, idx]


def test_aa_peeking_keeps_the_msprt_at_alpha_but_not_the_ztest() -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(20240611)
    experiments, alpha = 200, 0.05
    looks, sa, sb = _cumulative_conversions(rng, experiments, 2000, 100, 0.1, 0.1)
    msprt_fp = naive_fp = 0
    for e in range(experiments):
        monitor = SequentialMonitor(alpha=alpha)
        naive = False
        for k, n in enumerate(looks):
            state = monitor.look_proportions(int(sa[e, k]), n, int(sb[e, k]), n)
            naive = naive or two_proportion_ztest(int(sa[e, k]), n, int(sb[e, k]), n, alpha=alpha).significant
        msprt_fp += state.reject
        naive_fp += naive
    margin = 3 * math.sqrt(alpha * (1 - alpha) / experiments)
    assert msprt_fp / experiments <= alpha + margin
    assert naive_fp > msprt_fp and naive_fp / experiments > alpha


def test_ab_msprt_finds_a_true_improvement() -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(7)
    experiments = 100
    looks, sa, sb = _cumulative_conversions(rng, experiments, 5000, 250, 0.10, 0.13)
    found = wrong_way = 0
    for e in range(experiments):
        monitor = SequentialMonitor()
        for k, n in enumerate(looks):
            state = monitor.look_proportions(int(sa[e, k]), n, int(sb[e, k]), n)
            if state.reject:
                found += 1
                wrong_way += state.last["difference"] < 0
                break
    assert found >= 0.8 * experiments and wrong_way == 0


# ---------------------------------------------------------------------------------------------- Bayesian


def _beta_reference(sa: int, na: int, sb: int, nb: int, prior: tuple[float, float] = (1.0, 1.0)) -> float:
    scipy_stats = pytest.importorskip("scipy.stats")
    integrate = pytest.importorskip("scipy.integrate")
    a = scipy_stats.beta(prior[0] + sa, prior[1] + na - sa)
    b = scipy_stats.beta(prior[0] + sb, prior[1] + nb - sb)
    return integrate.quad(lambda x: a.pdf(x) * b.sf(x), 0, 1, epsabs=1e-13, epsrel=1e-12, limit=400)[0]


@pytest.mark.parametrize("case", [
    (10, 100, 20, 100),    # sums over a_a or a_b
    (3, 10, 95, 100),
    (95, 100, 3, 10),
    (2990, 3000, 2995, 3000),  # sums over the failures
    (0, 5, 5, 5),
    (2, 3000, 9, 2500),
])
def test_probability_to_beat_matches_numerical_integration(case: tuple[int, int, int, int]) -> None:
    assert probability_to_beat(*case) == pytest.approx(_beta_reference(*case), abs=1e-10)


def test_probability_to_beat_with_another_prior() -> None:
    assert probability_to_beat(3, 10, 4, 11, prior=(0.5, 1.0)) == pytest.approx(
        _beta_reference(3, 10, 4, 11, (0.5, 1.0)), abs=1e-10)
    # no integral parameter: the normal approximation
    assert probability_to_beat(3, 10, 4, 11, prior=(0.5, 0.5)) == pytest.approx(
        _beta_reference(3, 10, 4, 11, (0.5, 0.5)), abs=5e-3)


def test_probability_to_beat_matches_a_seeded_monte_carlo() -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(3)
    draws = 400_000
    p = float(np.mean(rng.beta(1 + 52, 1 + 448, draws) < rng.beta(1 + 61, 1 + 439, draws)))
    assert probability_to_beat(52, 500, 61, 500) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / draws))


def test_probability_to_beat_is_complementary_and_neutral() -> None:
    for case in [(10, 100, 20, 100), (7, 31, 3, 40), (0, 0, 4, 9)]:
        sa, na, sb, nb = case
        assert probability_to_beat(sa, na, sb, nb) + probability_to_beat(sb, nb, sa, na) == pytest.approx(1.0)
    assert probability_to_beat(0, 0, 0, 0) == pytest.approx(0.5)
    assert probability_to_beat(40, 400, 40, 400) == pytest.approx(0.5)


def test_probability_to_beat_large_counts_fall_back_close_to_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    exact = probability_to_beat(2000, 20000, 2090, 20000)
    monkeypatch.setattr(stats, "EXACT_MAX_TERMS", 10)
    approx = probability_to_beat(2000, 20000, 2090, 20000)
    assert approx != exact and approx == pytest.approx(exact, abs=2e-3)


def test_probability_to_beat_rejects_a_bad_prior() -> None:
    for prior in [(0.0, 1.0), (1.0, -1.0), (1.0,), (math.nan, 1.0)]:
        with pytest.raises(UsageError):
            probability_to_beat(1, 10, 2, 10, prior=prior)  # type: ignore[arg-type]


def test_probability_to_beat_means() -> None:
    p = probability_to_beat_means(1.0, 4.0, 400, 1.2, 4.0, 400)
    assert p == pytest.approx(stats.normal_cdf(0.2 / math.sqrt(8.0 / 400)))
    assert p + probability_to_beat_means(1.2, 4.0, 400, 1.0, 4.0, 400) == pytest.approx(1.0)
    assert probability_to_beat_means(1.0, 0.0, 5, 2.0, 0.0, 5) == 1.0
    assert probability_to_beat_means(1.0, 1.0, 0, 2.0, 1.0, 5) == 0.5
    with pytest.raises(UsageError):
        probability_to_beat_means(1.0, 1.0, -1, 2.0, 1.0, 5)


# ---------------------------------------------------------------------------------------------- planning


def test_sample_size_textbook_formula() -> None:
    z_a, z_b = 1.959963984540054, 0.8416212335729143
    root = (z_a * math.sqrt(2 * 0.11 * 0.89) + z_b * math.sqrt(0.1 * 0.9 + 0.12 * 0.88)) / 0.02
    assert sample_size_per_arm(0.10, 0.02) == math.ceil(root * root) == 3841
    root = (z_a * math.sqrt(2 * 0.09 * 0.91) + z_b * math.sqrt(0.1 * 0.9 + 0.08 * 0.92)) / 0.02
    assert sample_size_per_arm(0.10, -0.02) == math.ceil(root * root) < 3841  # a decrease: less variance


def test_mde_and_sample_size_round_trip() -> None:
    for p, n in [(0.1, 5000), (0.02, 40000), (0.5, 800)]:
        mde = minimum_detectable_effect(p, n, n)
        assert mde is not None
        assert sample_size_per_arm(p, mde) == n
    balanced = _f(minimum_detectable_effect(0.1, 5000, 5000))
    assert _f(minimum_detectable_effect(0.1, 20000, 20000)) < balanced
    assert _f(minimum_detectable_effect(0.1, 2000, 8000)) > balanced
    assert minimum_detectable_effect(0.5, 1, 1) is None


def test_sample_size_gives_the_promised_power_in_simulation() -> None:
    np = pytest.importorskip("numpy")
    n = sample_size_per_arm(0.10, 0.02)
    rng = np.random.default_rng(11)
    runs = 3000
    sa, sb = rng.binomial(n, 0.10, runs), rng.binomial(n, 0.12, runs)
    power = sum(two_proportion_ztest(int(a), n, int(b), n).significant for a, b in zip(sa, sb, strict=True)) / runs
    assert power == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize(("fn", "args", "kwargs"), [
    (minimum_detectable_effect, (0.0, 100, 100), {}),
    (minimum_detectable_effect, (0.1, 0, 100), {}),
    (minimum_detectable_effect, (0.1, 100, 100), {"power": 1.0}),
    (sample_size_per_arm, (0.1, 0.0), {}),
    (sample_size_per_arm, (0.1, 0.95), {}),
    (sample_size_per_arm, (1.2, 0.01), {}),
    (sample_size_per_arm, (0.1, 0.01), {"alpha": 0.0}),
])
def test_planning_validation(fn, args: tuple, kwargs: dict) -> None:
    with pytest.raises(UsageError):
        fn(*args, **kwargs)
