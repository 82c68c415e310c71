"""The statistics behind ``mlctl serve report``: is a challenger better than the control?

Pure functions over counts (conversions, reward 0/1) or summary statistics (continuous rewards),
standard library only. Each test returns a small frozen dataclass whose ``to_dict()`` is JSON-safe
(``None`` where a value is undefined or infinite).

* :func:`two_proportion_ztest`: the fixed-horizon test, valid for **one** look at a sample size
  chosen in advance. Looking after every batch and stopping at the first significant result
  inflates its false-positive rate many times over (see benchmarks/ab_sequential.py).
* :func:`msprt_proportions`, :func:`msprt_means` and :class:`SequentialMonitor`: the mixture
  sequential probability ratio test (mSPRT), whose p-value and confidence interval stay valid
  however often, and whenever, the experiment is looked at.
* :func:`probability_to_beat`, :func:`probability_to_beat_means`: the Bayesian ``P(B > A)``.
* :func:`minimum_detectable_effect`, :func:`sample_size_per_arm`: planning, and
  :func:`normal_ppf`, the inverse normal CDF they use.

The mSPRT (Robbins' normal mixture; Johari, Pekelis and Walsh, "Always valid inference: continuous
monitoring of A/B tests", Operations Research 2022). Let ``d`` be the observed difference
(B minus A) and ``s^2`` its variance; by the central limit theorem ``d ~ N(theta, s^2)``. Mixing
the alternative ``theta ~ N(0, tau^2)`` against the null ``theta = 0`` gives the likelihood ratio
of the two normal densities of ``d``::

    Lambda = N(d; 0, s^2 + tau^2) / N(d; 0, s^2)
           = sqrt(s^2 / (s^2 + tau^2)) * exp(tau^2 d^2 / (2 s^2 (s^2 + tau^2)))

With ``n`` observations in each arm and ``s^2 = V / n``, ``V = var_a + var_b``, this is the paper's
``sqrt(V / (V + n tau^2)) exp(n^2 tau^2 d^2 / (2 V (V + n tau^2)))``. Unequal arms use the same
form with ``s^2 = var_a / n_a + var_b / n_b``: ``d / s^2`` is then a sum of independent increments
in "information time" ``1 / s^2``, exactly so while the traffic split is constant and
approximately when it drifts. Under the null ``Lambda`` is a martingale, so by Ville's inequality
``P(Lambda >= 1/alpha at any look) <= alpha``: the always-valid p-value is ``min(1, 1/Lambda)``,
minimised over the looks so far (:class:`SequentialMonitor` keeps that minimum), and the
always-valid confidence interval is the set of differences ``theta0`` the test (centred at
``theta0``) does not reject::

    d +- sqrt(s^2 (s^2 + tau^2) / tau^2 * (2 log(1/alpha) + log((s^2 + tau^2) / s^2)))

intersected over the looks. For conversions, the test of ``theta = 0`` uses the pooled variance
``p (1 - p) (1/n_a + 1/n_b)`` (the variance under the null, as the z-test does) and the interval
the unpooled ``p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b`` (under ``theta0 != 0`` the arms differ).

The mixing scale ``tau`` is the size of effect the test is tuned for. In units of ``s`` the
rejection boundary ``|d| / s`` is ``sqrt((1 + s^2/tau^2) (2 log(1/alpha) + log(1 + tau^2/s^2)))``,
lowest (about 3.04 at alpha 0.05) where ``tau^2 = 8 s^2`` and within 10% of that for ``tau^2``
between 2.5 and 30 times ``s^2``. A fixed-horizon test with power 0.8 detects ``(1.96 + 0.84) s =
2.8 s``, close to ``sqrt(8) s``: **pass your minimum effect of interest as tau** (an absolute
difference) and the test is at its sharpest near the sample size where a fixed test would have 80%
power for that effect. The default is ``DEFAULT_TAU_SD`` (0.1) times the observations' pooled
standard deviation: effects of a tenth of a standard deviation (a 10% control converting at 13%),
which a fixed test finds with 80% power at about 1,600 per arm. Any fixed ``tau`` keeps the test
valid; only its power depends on it. The default is a plug-in that moves with the data at each
look: :class:`SequentialMonitor` freezes it at its first informative look.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mlctl.core.errors import UsageError

#: default mixing scale of the mSPRT, in pooled standard deviations of one observation
DEFAULT_TAU_SD = 0.1
#: above this many terms the exact Beta sum of :func:`probability_to_beat` gives way to the normal
#: approximation (about 20 ms of terms; the Betas then have tens of thousands of counts on every
#: side, where the normal approximation is accurate to about 1e-4)
EXACT_MAX_TERMS = 20_000

_SQRT2 = math.sqrt(2.0)


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict (``None`` for undefined or infinite values)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():  # type: ignore[call-overload]
            out[key] = _json_float(value) if isinstance(value, float) else value
        return out


@dataclass(frozen=True)
class ZTestResult(_Serialisable):
    """A fixed-horizon two-proportion z-test of B against A."""

    rate_a: float | None
    rate_b: float | None
    difference: float | None  #: rate_b - rate_a
    z: float | None
    p_value: float  #: two-sided
    ci_low: float | None  #: (1 - alpha) Wald interval of the difference (unpooled standard error)
    ci_high: float | None
    alpha: float
    significant: bool


@dataclass(frozen=True)
class SequentialResult(_Serialisable):
    """One look of the mSPRT: valid whenever, and however often, the experiment is looked at."""

    difference: float | None  #: B minus A
    se: float | None  #: the standard error the test uses
    tau: float | None  #: the mixing scale used
    log_likelihood_ratio: float  #: log Lambda (0 when there is no evidence yet)
    likelihood_ratio: float  #: Lambda (may be inf; None in to_dict then)
    p_value: float  #: min(1, 1/Lambda) at this look; the always-valid p-value is the minimum over looks
    ci_low: float | None  #: the always-valid (1 - alpha) interval of the difference at this look
    ci_high: float | None
    alpha: float
    reject: bool  #: Lambda >= 1/alpha
    n_a: float
    n_b: float


@dataclass(frozen=True)
class MonitorState(_Serialisable):
    """What :class:`SequentialMonitor` knows after its looks so far."""

    looks: int
    p_value: float  #: the running minimum of the looks' p-values
    reject: bool
    ci_low: float | None  #: the running intersection of the looks' intervals (None: unbounded)
    ci_high: float | None
    stopped_at_look: int | None  #: the first look that rejected (1-based)
    stopped_at_n_a: float | None
    stopped_at_n_b: float | None
    last: dict[str, Any]  #: the latest look, as :meth:`SequentialResult.to_dict`


# ---------------------------------------------------------------------------------------------- checks


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise UsageError(f"{name} must be strictly between 0 and 1, got {alpha!r}")


def _check_counts(successes: int, n: int, arm: str) -> None:
    for name, value in (("successes", successes), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{name}_{arm} must be a non-negative integer, got {value!r}")
    if successes > n:
        raise UsageError(f"successes_{arm} ({successes}) exceeds n_{arm} ({n})")


def _check_summary(mean: float, var: float, n: float, arm: str) -> None:
    if not math.isfinite(mean):
        raise UsageError(f"mean_{arm} must be finite, got {mean!r}")
    if not math.isfinite(var) or var < 0:
        raise UsageError(f"var_{arm} must be finite and non-negative, got {var!r}")
    if not math.isfinite(n) or n < 0:
        raise UsageError(f"n_{arm} must be non-negative, got {n!r}")


def _check_tau(tau: float | None) -> None:
    if tau is not None and not (math.isfinite(tau) and tau > 0):
        raise UsageError(f"tau must be a positive number, got {tau!r}")


# ---------------------------------------------------------------------------------------------- normal


def normal_cdf(x: float) -> float:
    """The standard normal CDF.

    >>> round(normal_cdf(1.959963984540054), 6)
    0.975
    """
    return 0.5 * math.erfc(-x / _SQRT2)


# Wichura (1988), algorithm AS241 PPND16: rational approximations accurate to about 1e-16.
_A = (3.3871328727963666080e0, 1.3314166789178437745e2, 1.9715909503065514427e3, 1.3731693765509461125e4,
      4.5921953931549871457e4, 6.7265770927008700853e4, 3.3430575583588128105e4, 2.5090809287301226727e3)
_B = (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2, 5.3941960214247511077e3,
      2.1213794301586595867e4, 3.9307895800092710610e4, 2.8729085735721942674e4, 5.2264952788528545610e3)
_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0, 3.64784832476320460504e0,
      1.27045825245236838258e0, 2.41780725177450611770e-1, 2.27238449892691845833e-2, 7.74545014278341407640e-4)
_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
      1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4, 1.05075007164441684324e-9)
_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0, 2.96560571828504891230e-1,
      2.65321895265761230930e-2, 1.24266094738807843860e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7)
_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
      7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7, 2.04426310338993978564e-15)


def _poly(coefficients: tuple[float, ...], x: float) -> float:
    out = 0.0
    for c in reversed(coefficients):
        out = out * x + c
    return out


def normal_ppf(p: float) -> float:
    """The inverse of the standard normal CDF (Wichura's AS241), for ``0 < p < 1``.

    >>> round(normal_ppf(0.975), 12)
    1.95996398454
    >>> normal_ppf(0.5)
    0.0
    """
    if not (0.0 < p < 1.0):
        raise UsageError(f"a probability strictly between 0 and 1 is needed, got {p!r}")
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _poly(_A, r) / _poly(_B, r)
    r = math.sqrt(-math.log(min(p, 1.0 - p)))
    if r <= 5.0:
        r -= 1.6
        x = _poly(_C, r) / _poly(_D, r)
    else:
        r -= 5.0
        x = _poly(_E, r) / _poly(_F, r)
    return -x if q < 0 else x


# ---------------------------------------------------------------------------------------------- z-test


def two_proportion_ztest(successes_a: int, n_a: int, successes_b: int, n_b: int, *,
                         alpha: float = 0.05) -> ZTestResult:
    """The two-sided z-test of ``p_b = p_a`` (pooled standard error) with the (1 - alpha) Wald
    interval of ``p_b - p_a`` (unpooled standard error), valid for one look at a fixed horizon.

    An empty arm, or no variation at all, gives ``p_value`` 1.0 and ``None`` where undefined.

    >>> r = two_proportion_ztest(100, 1000, 130, 1000)
    >>> round(r.z, 3), round(r.p_value, 4), r.significant
    (2.103, 0.0355, True)
    """
    _check_counts(successes_a, n_a, "a")
    _check_counts(successes_b, n_b, "b")
    _check_alpha(alpha)
    if n_a == 0 or n_b == 0:
        rate_a = successes_a / n_a if n_a else None
        rate_b = successes_b / n_b if n_b else None
        return ZTestResult(rate_a, rate_b, None, None, 1.0, None, None, alpha, False)
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    diff = rate_b - rate_a
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    se = math.sqrt(rate_a * (1.0 - rate_a) / n_a + rate_b * (1.0 - rate_b) / n_b)
    ci_low = ci_high = None
    if se > 0:
        half = normal_ppf(1.0 - alpha / 2.0) * se
        ci_low, ci_high = diff - half, diff + half
    if se_pooled <= 0:
        return ZTestResult(rate_a, rate_b, diff, None, 1.0, ci_low, ci_high, alpha, False)
    z = diff / se_pooled
    p_value = min(1.0, math.erfc(abs(z) / _SQRT2))
    return ZTestResult(rate_a, rate_b, diff, z, p_value, ci_low, ci_high, alpha, p_value <= alpha)


# ---------------------------------------------------------------------------------------------- mSPRT


def _msprt(diff: float | None, var_test: float, var_ci: float, tau: float | None, alpha: float,
           n_a: float, n_b: float) -> SequentialResult:
    """The mSPRT from the difference, its variance under the null (for the test) and in general
    (for the interval), and the mixing scale."""
    if diff is None or tau is None or var_test <= 0 or tau <= 0:
        return SequentialResult(diff, None, tau, 0.0, 1.0, 1.0, None, None, alpha, False, n_a, n_b)
    tau2 = tau * tau
    log_lr = 0.5 * math.log(var_test / (var_test + tau2)) + tau2 * diff * diff / (2 * var_test * (var_test + tau2))
    lr = math.exp(log_lr) if log_lr < 700 else math.inf
    p_value = min(1.0, math.exp(-log_lr)) if log_lr > -700 else 1.0
    ci_low = ci_high = None
    if var_ci > 0:
        half = math.sqrt(var_ci * (var_ci + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log1p(tau2 / var_ci)))
        ci_low, ci_high = diff - half, diff + half
    return SequentialResult(diff, math.sqrt(var_test), tau, log_lr, lr, p_value, ci_low, ci_high, alpha,
                            log_lr >= math.log(1 / alpha), n_a, n_b)


def msprt_proportions(successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05,
                      tau: float | None = None) -> SequentialResult:
    """One look of the always-valid test of ``p_b = p_a`` (see the module's docstring).

    ``tau``: the mixing scale, an absolute difference in conversion rate; best set to the minimum
    effect of interest. Default: ``DEFAULT_TAU_SD`` times the pooled standard deviation
    ``sqrt(p (1 - p))``.

    >>> r = msprt_proportions(1000, 10000, 1150, 10000)
    >>> r.reject, round(r.p_value, 4), round(r.tau, 3)
    (True, 0.0228, 0.031)
    >>> msprt_proportions(100, 1000, 130, 1000).reject   # the z-test's p is 0.036: not yet
    False
    """
    _check_counts(successes_a, n_a, "a")
    _check_counts(successes_b, n_b, "b")
    _check_alpha(alpha)
    _check_tau(tau)
    if n_a == 0 or n_b == 0:
        return _msprt(None, 0.0, 0.0, tau, alpha, n_a, n_b)
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    if tau is None:
        tau = DEFAULT_TAU_SD * math.sqrt(pooled * (1.0 - pooled))
    var_test = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    var_ci = rate_a * (1.0 - rate_a) / n_a + rate_b * (1.0 - rate_b) / n_b
    return _msprt(rate_b - rate_a, var_test, var_ci, tau, alpha, n_a, n_b)


def msprt_means(mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float, n_b: float, *,
                alpha: float = 0.05, tau: float | None = None) -> SequentialResult:
    """One look of the always-valid test of ``mean_b = mean_a`` for continuous rewards, from each
    arm's mean, variance of one observation and count; ``s^2 = var_a / n_a + var_b / n_b``.

    ``tau``: the mixing scale, in the rewards' units; default ``DEFAULT_TAU_SD`` times the pooled
    standard deviation of one observation.

    >>> r = msprt_means(1.0, 4.0, 5000, 1.2, 4.0, 5000)
    >>> r.reject, round(r.difference, 3)
    (True, 0.2)
    """
    _check_summary(mean_a, var_a, n_a, "a")
    _check_summary(mean_b, var_b, n_b, "b")
    _check_alpha(alpha)
    _check_tau(tau)
    if n_a == 0 or n_b == 0:
        return _msprt(None, 0.0, 0.0, tau, alpha, n_a, n_b)
    if tau is None:
        dof = n_a + n_b - 2
        pooled_var = ((n_a - 1) * var_a + (n_b - 1) * var_b) / dof if dof > 0 else (var_a + var_b) / 2
        tau = DEFAULT_TAU_SD * math.sqrt(max(pooled_var, 0.0))
    var = var_a / n_a + var_b / n_b
    return _msprt(mean_b - mean_a, var, var, tau, alpha, n_a, n_b)


class SequentialMonitor:
    """Keeps an experiment's always-valid p-value (the running minimum) and interval (the running
    intersection) across looks, and records where it first rejected.

    The default mixing scale is frozen at the first look where it is defined, so that every look
    tests against the same mixture.

    >>> monitor = SequentialMonitor(alpha=0.05)
    >>> _ = monitor.look_proportions(50, 500, 60, 500)
    >>> state = monitor.look_proportions(100, 1000, 160, 1000)
    >>> state.looks, state.reject, state.stopped_at_look
    (2, True, 2)
    """

    def __init__(self, *, alpha: float = 0.05, tau: float | None = None) -> None:
        _check_alpha(alpha)
        _check_tau(tau)
        self.alpha = alpha
        self.tau = tau
        self.tau_: float | None = tau
        self.looks_ = 0
        self.p_value_ = 1.0
        self.ci_low_ = -math.inf
        self.ci_high_ = math.inf
        self.stopped_at_: tuple[int, float, float] | None = None
        self.last_: SequentialResult | None = None

    def look_proportions(self, successes_a: int, n_a: int, successes_b: int, n_b: int) -> MonitorState:
        """Look at cumulative conversion counts."""
        return self.observe(msprt_proportions(successes_a, n_a, successes_b, n_b, alpha=self.alpha, tau=self.tau_))

    def look_means(self, mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float,
                   n_b: float) -> MonitorState:
        """Look at cumulative means, variances and counts of continuous rewards."""
        return self.observe(msprt_means(mean_a, var_a, n_a, mean_b, var_b, n_b, alpha=self.alpha, tau=self.tau_))

    def observe(self, result: SequentialResult) -> MonitorState:
        """Fold in one look computed elsewhere (at this monitor's alpha)."""
        if result.alpha != self.alpha:
            raise UsageError(f"this monitor runs at alpha {self.alpha}, the look was computed at {result.alpha}")
        if self.tau_ is None and result.tau is not None and result.tau > 0:
            self.tau_ = result.tau
        self.looks_ += 1
        self.p_value_ = min(self.p_value_, result.p_value)
        if result.ci_low is not None and result.ci_high is not None:
            self.ci_low_ = max(self.ci_low_, result.ci_low)
            self.ci_high_ = min(self.ci_high_, result.ci_high)
        if self.stopped_at_ is None and result.reject:
            self.stopped_at_ = (self.looks_, result.n_a, result.n_b)
        self.last_ = result
        return self.state()

    def state(self) -> MonitorState:
        """The current state. An empty interval (low above high) means the normal model failed."""
        stop = self.stopped_at_
        return MonitorState(
            looks=self.looks_,
            p_value=self.p_value_,
            reject=stop is not None,
            ci_low=self.ci_low_ if math.isfinite(self.ci_low_) else None,
            ci_high=self.ci_high_ if math.isfinite(self.ci_high_) else None,
            stopped_at_look=stop[0] if stop else None,
            stopped_at_n_a=stop[1] if stop else None,
            stopped_at_n_b=stop[2] if stop else None,
            last=self.last_.to_dict() if self.last_ else {},
        )


# ---------------------------------------------------------------------------------------------- Bayesian


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beat_sum(a_x: float, b_x: float, a_y: int, b_y: float) -> float:
    """``P(Y > X)`` for ``X ~ Beta(a_x, b_x)``, ``Y ~ Beta(a_y, b_y)``, ``a_y`` a positive integer:
    ``sum_{i<a_y} B(a_x + i, b_x + b_y) / ((b_y + i) B(1 + i, b_y) B(a_x, b_x))``, in log space.
    Consecutive terms differ by the factor ``(a_x + i)(b_y + i) / ((a_x + b_x + b_y + i)(1 + i))``."""
    log_term = _log_beta(a_x, b_x + b_y) - math.log(b_y) - _log_beta(1.0, b_y) - _log_beta(a_x, b_x)
    logs = [log_term]
    for i in range(a_y - 1):
        log_term += math.log((a_x + i) * (b_y + i) / ((a_x + b_x + b_y + i) * (1.0 + i)))
        logs.append(log_term)
    top = max(logs)
    return math.exp(top) * math.fsum(math.exp(v - top) for v in logs)


def _beta_normal(a_a: float, b_a: float, a_b: float, b_b: float) -> float:
    def moments(a: float, b: float) -> tuple[float, float]:
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1.0))

    mean_a, var_a = moments(a_a, b_a)
    mean_b, var_b = moments(a_b, b_b)
    return normal_cdf((mean_b - mean_a) / math.sqrt(var_a + var_b))


def probability_to_beat(successes_a: int, n_a: int, successes_b: int, n_b: int, *,
                        prior: tuple[float, float] = (1.0, 1.0)) -> float:
    """``P(p_b > p_a)`` under independent ``Beta(prior + successes, prior + failures)`` posteriors.

    Exact (Evan Miller's closed form, a sum of as many terms as the smallest integral posterior
    parameter; each of the four can be summed over by symmetry) while that is at most
    ``EXACT_MAX_TERMS``; otherwise, or when no parameter is integral (a Jeffreys prior on odd
    counts), the normal approximation of the two Betas. Deterministic.

    >>> round(probability_to_beat(10, 100, 20, 100), 4)
    0.9752
    >>> round(probability_to_beat(0, 0, 0, 0), 12)
    0.5
    """
    _check_counts(successes_a, n_a, "a")
    _check_counts(successes_b, n_b, "b")
    if len(prior) != 2 or not all(math.isfinite(v) and v > 0 for v in prior):
        raise UsageError(f"prior must be two positive numbers (alpha, beta), got {prior!r}")
    a_a, b_a = prior[0] + successes_a, prior[1] + n_a - successes_a
    a_b, b_b = prior[0] + successes_b, prior[1] + n_b - successes_b
    # (terms, how): P(B > A) summed over a_b; 1 - P(A > B) over a_a; over b_a and b_b through 1 - p
    options = []
    for size, how in ((a_b, "a_b"), (a_a, "a_a"), (b_a, "b_a"), (b_b, "b_b")):
        if size == int(size) and size <= EXACT_MAX_TERMS:
            options.append((int(size), how))
    if not options:
        return _beta_normal(a_a, b_a, a_b, b_b)
    size, how = min(options)
    if how == "a_b":
        p = _beat_sum(a_a, b_a, size, b_b)
    elif how == "a_a":
        p = 1.0 - _beat_sum(a_b, b_b, size, b_a)
    elif how == "b_a":  # P(1 - p_a > 1 - p_b), 1 - p ~ Beta(b, a)
        p = _beat_sum(b_b, a_b, size, a_a)
    else:
        p = 1.0 - _beat_sum(b_a, a_a, size, a_b)
    return min(1.0, max(0.0, p))


def probability_to_beat_means(mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float,
                              n_b: float) -> float:
    """``P(mu_b > mu_a)`` for continuous rewards: normal posteriors of the means under flat priors,
    ``Phi((mean_b - mean_a) / sqrt(var_a / n_a + var_b / n_b))``. An empty arm gives 0.5.

    >>> round(probability_to_beat_means(1.0, 4.0, 400, 1.2, 4.0, 400), 4)
    0.9214
    """
    _check_summary(mean_a, var_a, n_a, "a")
    _check_summary(mean_b, var_b, n_b, "b")
    if n_a == 0 or n_b == 0:
        return 0.5
    se = math.sqrt(var_a / n_a + var_b / n_b)
    diff = mean_b - mean_a
    if se == 0:
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    return normal_cdf(diff / se)


# ---------------------------------------------------------------------------------------------- planning


def _check_plan(p_control: float, alpha: float, power: float) -> None:
    if not (isinstance(p_control, int | float) and 0.0 < p_control < 1.0):
        raise UsageError(f"p_control must be strictly between 0 and 1, got {p_control!r}")
    _check_alpha(alpha)
    _check_alpha(power, "power")


def _required_effect(p1: float, p2: float, n_a: float, n_b: float, z_alpha: float, z_power: float) -> float:
    """``z_alpha * SE under the null + z_power * SE under the alternative`` for rates p1 (A), p2 (B)."""
    pooled = (n_a * p1 + n_b * p2) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    se1 = math.sqrt(p1 * (1.0 - p1) / n_a + p2 * (1.0 - p2) / n_b)
    return z_alpha * se0 + z_power * se1


def minimum_detectable_effect(p_control: float, n_a: int, n_b: int, *, alpha: float = 0.05,
                              power: float = 0.8) -> float | None:
    """The smallest absolute increase ``delta`` of the conversion rate that the two-sided z-test at
    ``alpha`` detects with probability ``power`` on ``n_a`` control and ``n_b`` challenger
    observations: the root of ``delta = z_(1-alpha/2) SE_0 + z_power SE_1`` (``SE_0`` pooled at the
    traffic-weighted rate, ``SE_1`` unpooled at ``p_control`` and ``p_control + delta``), by
    bisection. ``None`` when no increase up to a rate of 1 is detectable.

    >>> round(minimum_detectable_effect(0.10, 5000, 5000), 4)
    0.0174
    """
    _check_plan(p_control, alpha, power)
    for name, n in (("n_a", n_a), ("n_b", n_b)):
        if not (isinstance(n, int | float) and n > 0):
            raise UsageError(f"{name} must be positive, got {n!r}")
    z_alpha, z_power = normal_ppf(1.0 - alpha / 2.0), normal_ppf(power)

    def gap(delta: float) -> float:
        return delta - _required_effect(p_control, p_control + delta, n_a, n_b, z_alpha, z_power)

    low, high = 0.0, 1.0 - p_control
    if gap(high) < 0:
        return None
    for _ in range(200):
        mid = (low + high) / 2
        if gap(mid) < 0:
            low = mid
        else:
            high = mid
        if high - low < 1e-13:
            break
    return high


def sample_size_per_arm(p_control: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm (equal split) for the two-sided z-test at ``alpha`` to detect an
    absolute change ``mde`` of ``p_control`` with probability ``power``::

        n = (z_(1-alpha/2) sqrt(2 p (1 - p)) + z_power sqrt(p1 (1 - p1) + p2 (1 - p2)))^2 / mde^2

    with ``p`` the mean of ``p1 = p_control`` and ``p2 = p_control + mde``, rounded up.

    >>> sample_size_per_arm(0.10, 0.02)
    3841
    """
    _check_plan(p_control, alpha, power)
    p2 = p_control + mde
    if not (math.isfinite(mde) and mde != 0 and 0.0 < p2 < 1.0):
        raise UsageError(f"mde must be non-zero and keep the rate within (0, 1), got {mde!r}")
    z_alpha, z_power = normal_ppf(1.0 - alpha / 2.0), normal_ppf(power)
    p_bar = (p_control + p2) / 2
    root_n = (z_alpha * math.sqrt(2 * p_bar * (1 - p_bar))
              + z_power * math.sqrt(p_control * (1 - p_control) + p2 * (1 - p2))) / abs(mde)
    return math.ceil(root_n * root_n - 1e-9)
