"""``mlctl serve report NAME``: per-variant traffic and outcomes, the tests against the control,
the decision, and ``--promote``.

Every challenger is compared with the control (the first variant):

* the always-valid mixture SPRT (:func:`~mlctl.serving.experiments.stats.msprt_proportions`, or
  :func:`~mlctl.serving.experiments.stats.msprt_means` for continuous rewards): its p-value may
  be read after every request without inflating false positives, so it is **the stopping rule**;
* the fixed-horizon two-proportion z-test, for reference (valid only for one look at a sample
  size fixed in advance);
* the Bayesian probability that the challenger beats the control, and the minimum detectable
  effect for the traffic seen (80% power).

With several challengers alpha is split between them (Bonferroni). The decision: *significant*
when a challenger's sequential test rejects; the winner is the challenger with the largest
significant improvement, or the control when every significant difference favours it.
``promote`` then points the control's alias (``champion``, or the alias the control names) at the
winner's version and stops the experiment, so the gateway serves the winner to everyone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.core.errors import CheckFailed, UsageError
from mlctl.core.output import Result, Table
from mlctl.serving.experiments import stats
from mlctl.serving.experiments.definition import Experiment
from mlctl.serving.experiments.store import VariantStats

if TYPE_CHECKING:
    from mlctl.core.config import LoadedConfig


def _mean_var(s: VariantStats) -> tuple[float, float]:
    if s.trials == 0:
        return 0.0, 0.0
    mean = s.reward_sum / s.trials
    var = max(0.0, s.reward_sq_sum / s.trials - mean * mean) * s.trials / max(1, s.trials - 1)
    return mean, var


def compare(exp: Experiment, control: VariantStats, other: VariantStats, *, alpha: float) -> dict[str, Any]:
    """The tests of one challenger against the control (JSON-safe)."""
    out: dict[str, Any] = {"difference": None, "relative_lift": None, "z_test": None, "sequential": None,
                           "probability_to_beat": None, "minimum_detectable_effect": None}
    if control.trials == 0 or other.trials == 0:
        return out
    if exp.reward == "binary":
        x_a, x_b = round(control.reward_sum), round(other.reward_sum)
        if not (0 <= x_a <= control.trials and 0 <= x_b <= other.trials):
            raise UsageError(f"experiment {exp.name}: binary rewards outside 0-1 were recorded; "
                             "create it with --reward continuous")
        seq = stats.msprt_proportions(x_a, control.trials, x_b, other.trials, alpha=alpha)
        z = stats.two_proportion_ztest(x_a, control.trials, x_b, other.trials, alpha=alpha)
        p_a = x_a / control.trials
        out.update(z_test=z.to_dict(),
                   probability_to_beat=stats.probability_to_beat(x_a, control.trials, x_b, other.trials),
                   minimum_detectable_effect=(stats.minimum_detectable_effect(p_a, control.trials, other.trials,
                                                                              alpha=alpha)
                                              if 0.0 < p_a < 1.0 else None))
        mean_a, mean_b = p_a, x_b / other.trials
    else:
        mean_a, var_a = _mean_var(control)
        mean_b, var_b = _mean_var(other)
        seq = stats.msprt_means(mean_a, var_a, control.trials, mean_b, var_b, other.trials, alpha=alpha)
        out["probability_to_beat"] = stats.probability_to_beat_means(mean_a, var_a, control.trials, mean_b, var_b,
                                                                     other.trials)
    out["sequential"] = seq.to_dict()
    out["difference"] = mean_b - mean_a
    out["relative_lift"] = (mean_b - mean_a) / abs(mean_a) if mean_a else None
    return out


def decide(exp: Experiment, comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    """The stopping rule over the challengers' sequential tests."""
    better: list[dict[str, Any]] = []
    worse: list[dict[str, Any]] = []
    for c in comparisons:
        seq = c["sequential"]
        if seq and seq["reject"] and c["difference"] is not None:
            (better if c["difference"] > 0 else worse).append(c)
    if better:
        best = max(better, key=lambda c: c["difference"])
        p = best["sequential"]["p_value"]
        return {"status": "significant", "winner": best["variant"],
                "reason": f"{best['variant']} beats {exp.control} (always-valid p = {p:.4g})"}
    if worse and len(worse) == len(comparisons):
        return {"status": "significant", "winner": exp.control,
                "reason": f"{exp.control} beats every challenger"}
    if all(c["sequential"] is None for c in comparisons):
        return {"status": "no_data", "winner": None, "reason": "no outcomes yet for the control or a challenger"}
    return {"status": "not_yet", "winner": None,
            "reason": "no sequential test has rejected yet; keep the experiment running"}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A histogram quantile from cumulative (upper bound, count) buckets, interpolated as Prometheus does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = upper, count
    return None


def gateway_latency(url: str, model: str) -> dict[str, dict[str, float | None]]:
    """p50/p99 in ms per variant, from a gateway's ``/metrics`` (since that gateway started)."""
    from mlctl.core.errors import require
    from mlctl.core.http import request

    parser = require("prometheus_client.parser", "serve", feature="latency from a gateway")
    text = request("GET", url.rstrip("/") + "/metrics", check=True, what=f"the gateway at {url}").text()
    per: dict[str, list[tuple[float, float]]] = {}
    for family in parser.text_string_to_metric_families(text):
        if family.name != "mlctl_gateway_request_duration_seconds":
            continue
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels.get("model") == model:
                per.setdefault(s.labels["variant"], []).append((float(s.labels["le"]), s.value))
    out = {}
    for variant, buckets in per.items():
        buckets.sort()
        p50, p99 = _quantile(buckets, 0.5), _quantile(buckets, 0.99)
        out[variant] = {"p50_ms": None if p50 is None else p50 * 1000, "p99_ms": None if p99 is None else p99 * 1000}
    return out


@dataclass
class ExperimentReport(Result):
    """``mlctl serve report NAME``."""

    experiment: Experiment
    store: str
    alpha: float
    variants: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    shadow: dict[str, Any] | None
    decision: dict[str, Any]
    promotion: dict[str, Any] | None = None
    notes_: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {"experiment": self.experiment.to_dict(), "store": self.store, "alpha": self.alpha,
                "variants": self.variants, "comparisons": self.comparisons, "shadow": self.shadow,
                "decision": self.decision, "promotion": self.promotion}

    def tables(self) -> list[Table]:
        def pct(v: Any) -> str:
            return "-" if v is None else f"{100 * v:.1f}%"

        def num(v: Any, digits: int = 4) -> str:
            return "-" if v is None else f"{v:.{digits}g}"

        latency = any(v["latency_p50_ms"] is not None for v in self.variants)
        rows = []
        for v in self.variants:
            row = {"variant": v["variant"], "role": v["role"], "version": v["version"] or "-",
                   "assigned": v["assigned"], "outcomes": v["trials"], "mean": num(v["mean_reward"], 3),
                   "errors": v["errors"]}
            if latency:
                row.update({"p50 ms": num(v["latency_p50_ms"], 3), "p99 ms": num(v["latency_p99_ms"], 3)})
            rows.append(row)
        tests = [{"challenger": c["variant"], "diff": num(c["difference"], 3), "lift": pct(c["relative_lift"]),
                  "p (seq)": num((c["sequential"] or {}).get("p_value"), 2),
                  "p (z)": num((c["z_test"] or {}).get("p_value"), 2),
                  "P(beats)": pct(c["probability_to_beat"]),
                  "MDE": num(c["minimum_detectable_effect"], 2)} for c in self.comparisons]
        out = [Table(rows, title=f"experiment {self.experiment.name}: {self.experiment.model}, "
                                 f"{self.experiment.strategy}, {self.experiment.status}"),
               Table(tests, title=f"against {self.experiment.control} (alpha {self.alpha:g}; the sequential "
                                  "p decides)")]
        if self.shadow:
            out.append(Table(self.shadow, title="shadow"))
        decision = {"decision": self.decision["status"], "winner": self.decision["winner"] or "-",
                    "why": self.decision["reason"]}
        if self.promotion:
            decision["promotion"] = (f"{self.promotion['alias']}: {self.promotion['from_version']} -> "
                                     f"{self.promotion['to_version']}" + (" (dry run)" if self.promotion["dry_run"]
                                                                          else ""))
        out.append(Table(decision, title="decision"))
        return out

    def notes(self) -> Iterable[str]:
        return list(self.notes_)


def build_report(loaded: LoadedConfig, name: str, *, alpha: float = 0.05,
                 gateway: str | None = None) -> ExperimentReport:
    """The report of one experiment (counters from the store; latency from ``gateway``'s /metrics)."""
    from mlctl.serving.experiments.manage import store_for, variant_versions

    if not 0.0 < alpha < 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    with store_for(loaded) as store:
        exp = store.get(name)
        counters = store.stats(name)
        url = store.url
    versions, notes = variant_versions(loaded, exp)
    latency = gateway_latency(gateway, exp.model) if gateway else {}
    variants = []
    for n in exp.variant_names:
        s = counters.get(n, VariantStats())
        mean = s.reward_sum / s.trials if s.trials else None
        lat = latency.get(n, {})
        variants.append({"variant": n, "role": "control" if n == exp.control else "challenger",
                         "version": versions.get(n), "assigned": s.assigned, "fallback": s.fallback,
                         "errors": s.errors, "trials": s.trials, "reward_sum": s.reward_sum, "mean_reward": mean,
                         "latency_p50_ms": lat.get("p50_ms"), "latency_p99_ms": lat.get("p99_ms")})
    challengers = [n for n in exp.variant_names if n != exp.control]
    per_test_alpha = alpha / max(1, len(challengers))
    control = counters.get(exp.control, VariantStats())
    comparisons = [{"variant": n, "control": exp.control,
                    **compare(exp, control, counters.get(n, VariantStats()), alpha=per_test_alpha)}
                   for n in challengers]
    shadow = None
    if exp.shadow is not None:
        s = counters.get(exp.shadow.target, VariantStats())
        shadow = {"target": exp.shadow.target, "share": exp.shadow.share, "copies": s.shadowed,
                  "agreed": s.shadow_agreed, "agreement_rate": s.shadow_agreed / s.shadowed if s.shadowed else None,
                  "errors": s.errors}
    if gateway is None:
        notes.append("latency: give --gateway URL to read it from a gateway's /metrics")
    return ExperimentReport(exp, url, alpha, variants, comparisons, shadow, decide(exp, comparisons), notes_=notes)


def promote_winner(loaded: LoadedConfig, report: ExperimentReport, *, dry_run: bool = False) -> ExperimentReport:
    """Point the control's alias at the winner's version and stop the experiment (exit 3 when the
    result is not significant yet)."""
    from mlctl.lifecycle.registry import promote
    from mlctl.serving.experiments.manage import store_for

    exp, decision = report.experiment, report.decision
    if decision["status"] != "significant":
        raise CheckFailed(f"experiment {exp.name}: not significant yet; nothing promoted ({decision['reason']})",
                          hint="run the report again later; the sequential test may be read at any time")
    alias = exp.control if not exp.control.isdigit() else "champion"
    versions = {v["variant"]: v["version"] for v in report.variants}
    winner_version = versions.get(decision["winner"])
    if winner_version is None:
        raise UsageError(f"cannot tell which version {decision['winner']} is; check the registry")
    result = promote(loaded, exp.model, winner_version, alias, dry_run=dry_run)
    report.promotion = {"alias": alias, "from_version": result.previous, "to_version": winner_version,
                        "changed": result.changed, "dry_run": dry_run, "experiment_stopped": not dry_run}
    if not dry_run:
        with store_for(loaded) as store:
            report.experiment = store.set_status(exp.name, "stopped")
    return report


def plot_report(report: ExperimentReport, path: Path) -> None:
    """Mean reward per variant with its 95% interval, and P(beats control) above each challenger."""
    from mlctl.core.errors import require

    require("matplotlib", "ml", feature="plots", package="matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names, means, errs = [], [], []
    for v in report.variants:
        names.append(v["variant"])
        mean = v["mean_reward"] or 0.0
        n = max(1, v["trials"])
        se = math.sqrt(max(mean * (1 - mean), 0.0) / n) if report.experiment.reward == "binary" else 0.0
        means.append(mean)
        errs.append(1.96 * se)
    colours = ["#4c72b0" if v["role"] == "control" else "#dd8452" for v in report.variants]
    ax.bar(names, means, yerr=errs, color=colours, capsize=6)
    beats = {c["variant"]: c["probability_to_beat"] for c in report.comparisons}
    for i, name in enumerate(names):
        if beats.get(name) is not None:
            ax.annotate(f"P(beats control) {100 * beats[name]:.1f}%", (i, means[i] + errs[i]), ha="center",
                        va="bottom", fontsize=8)
    ax.set_ylabel("mean reward" if report.experiment.reward == "continuous" else "conversion rate")
    ax.set_title(f"{report.experiment.name}: {report.decision['status']}"
                 + (f", winner {report.decision['winner']}" if report.decision["winner"] else ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
