"""Sequential A/B testing: the false-positive rate of peeking, and the power of the always-valid test.

Simulates ``--experiments`` experiments of ``--requests`` requests each, every request routed to
A or B with probability 1/2 (so the arms' sizes differ a little, as in the gateway) and converting
with the arm's rate. The experiment is looked at after every ``--peek`` requests and stopped at
the first look that rejects ``p_b = p_a`` at ``--alpha``:

* mSPRT: :class:`mlctl.serving.experiments.stats.SequentialMonitor` (the mixture SPRT, default
  mixing scale), valid under any amount of peeking;
* naive peeking: :func:`~mlctl.serving.experiments.stats.two_proportion_ztest` at every look, the
  mistake the mSPRT exists to prevent;
* fixed horizon: the same z-test once, at the last request (its nominal use).

With B's rate equal to A's (A/A) a rejection is a false positive; with B's rate raised by each of
``--lifts`` (relative), the rejection rate is the power, and the stopping time (requests until the
first rejection, both arms together) is reported as the median over the experiments that
stopped. Rates come with Wilson 95% intervals. Conversions are simulated with numpy; each look is
computed by the library's own functions.

Target (issue 11): in 1,000 A/A experiments with peeking after every 100 requests, the
false-positive rate stays at or under the nominal 5%.

Usage:
    python benchmarks/ab_sequential.py [--experiments 1000] [--requests 10000] [--peek 100] [--rate 0.1]
                                       [--lifts 0.1,0.2,0.3] [--alpha 0.05] [--seed 0] [--write-docs]
Writes benchmarks/results/ab_sequential.json and, with --write-docs, the ab_sequential section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, machine, write_section  # noqa: E402 - benchmarks/ is not a package

sys.path.insert(0, str(REPO))
TARGET_FPR = 0.05
CHUNK = 100  # experiments simulated at once (memory: CHUNK x requests booleans per array)


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def simulate(rng: Any, experiments: int, requests: int, peek: int, rate_a: float, rate_b: float,
             alpha: float) -> dict[str, Any]:
    """Run the three procedures on the same simulated experiments."""
    import numpy as np

    from mlctl.serving.experiments.stats import SequentialMonitor, two_proportion_ztest

    looks = np.arange(peek, requests + 1, peek)
    msprt_stops: list[int | None] = []
    naive_stops: list[int | None] = []
    fixed = 0
    for start in range(0, experiments, CHUNK):
        size = min(CHUNK, experiments - start)
        to_b = rng.random((size, requests)) < 0.5
        converts = rng.random((size, requests)) < np.where(to_b, rate_b, rate_a)
        n_b = to_b.cumsum(axis=1)[:, looks - 1]
        s_b = (to_b & converts).cumsum(axis=1)[:, looks - 1]
        s_a = (~to_b & converts).cumsum(axis=1)[:, looks - 1]
        n_a = looks[None, :] - n_b
        for e in range(size):
            rows = list(zip(s_a[e].tolist(), n_a[e].tolist(), s_b[e].tolist(), n_b[e].tolist(), strict=True))
            monitor = SequentialMonitor(alpha=alpha)
            stop = None
            for k, (sa, na, sb, nb) in enumerate(rows):
                if monitor.look_proportions(sa, na, sb, nb).reject:
                    stop = int(looks[k])
                    break
            msprt_stops.append(stop)
            stop = None
            for k, (sa, na, sb, nb) in enumerate(rows):
                if two_proportion_ztest(sa, na, sb, nb, alpha=alpha).significant:
                    stop = int(looks[k])
                    break
            naive_stops.append(stop)
            fixed += two_proportion_ztest(*rows[-1], alpha=alpha).significant

    def summary(stops: list[int | None]) -> dict[str, Any]:
        stopped = [s for s in stops if s is not None]
        low, high = wilson(len(stopped), experiments)
        return {"rejections": len(stopped), "rate": len(stopped) / experiments, "wilson95": [low, high],
                "median_stop_requests": statistics.median(stopped) if stopped else None}

    low, high = wilson(fixed, experiments)
    return {"rate_a": rate_a, "rate_b": rate_b, "msprt": summary(msprt_stops), "naive_peeking": summary(naive_stops),
            "fixed_horizon": {"rejections": fixed, "rate": fixed / experiments, "wilson95": [low, high]}}


def cell(row: dict[str, Any], stop: bool = True) -> str:
    low, high = row["wilson95"]
    text = f"{row['rate']:.1%} [{low:.1%}, {high:.1%}]"
    if stop and row.get("median_stop_requests") is not None:
        text += f", median stop {row['median_stop_requests']:,.0f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--peek", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--lifts", default="0.1,0.2,0.3", help="relative lifts of B, comma-separated")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    import numpy as np

    from mlctl.serving.experiments.stats import DEFAULT_TAU_SD

    rng = np.random.default_rng(args.seed)
    lifts = [float(v) for v in args.lifts.split(",") if v.strip()]
    t0 = time.perf_counter()
    scenarios = [{"name": "A/A", "lift": 0.0, **simulate(rng, args.experiments, args.requests, args.peek,
                                                         args.rate, args.rate, args.alpha)}]
    for lift in lifts:
        scenarios.append({"name": f"+{lift:.0%}", "lift": lift,
                          **simulate(rng, args.experiments, args.requests, args.peek, args.rate,
                                     args.rate * (1 + lift), args.alpha)})
    seconds = time.perf_counter() - t0
    aa = scenarios[0]
    result = {"machine": machine(), "python": platform.python_version(), "numpy": np.__version__,
              "experiments": args.experiments, "requests": args.requests, "peek": args.peek,
              "looks": args.requests // args.peek, "rate": args.rate, "alpha": args.alpha, "seed": args.seed,
              "tau": f"default: {DEFAULT_TAU_SD} x pooled sd", "seconds": seconds,
              "target_fpr": TARGET_FPR, "target_met": aa["msprt"]["rate"] <= TARGET_FPR, "scenarios": scenarios}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ab_sequential.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    table = [f"| B's conversion rate (A: {args.rate:.0%}) | mSPRT, peeking every {args.peek} requests "
             f"| naive z-test, peeking every {args.peek} | fixed-horizon z-test, one look at {args.requests:,} |",
             "|---|---|---|---|"]
    for s in scenarios:
        label = f"{s['rate_b']:.1%} (A/A: false positives)" if s["lift"] == 0 else f"{s['rate_b']:.1%} ({s['name']})"
        table.append(f"| {label} | {cell(s['msprt'])} | {cell(s['naive_peeking'])} "
                     f"| {cell(s['fixed_horizon'], stop=False)} |")
    met = "met" if result["target_met"] else "NOT met"
    table.append("")
    table.append(f"Rejection rates at alpha {args.alpha} over {args.experiments:,} simulated experiments each "
                 f"(Wilson 95% intervals), up to {args.requests:,} requests split at random 50/50, "
                 f"{result['looks']} looks; median stop: requests (both arms) at the first rejection, over the "
                 f"experiments that rejected. Seed {args.seed}, {seconds:.0f} s. Target: A/A false-positive rate "
                 f"of the mSPRT at or under {TARGET_FPR:.0%} with peeking after every 100 requests: **{met}** "
                 f"({aa['msprt']['rate']:.1%}, against {aa['naive_peeking']['rate']:.1%} for naive peeking).")
    text = "\n".join(table)
    print(text)
    if args.write_docs:
        write_section("ab_sequential", text, result)


if __name__ == "__main__":
    main()
