"""NAB (Numenta Anomaly Benchmark) score and speed of mlctl's anomaly detectors.

Runs the default detector (``mlctl.detect.base.DEFAULT_DETECTOR``) over a NAB-layout corpus
(``DATA/data/<category>/<file>.csv`` and ``DATA/labels/combined_windows.json``) and scores it
with NAB's rules under its three profiles, two ways:

* **leave-one-category-out (the headline)**: for each category, the threshold is optimised on
  the other categories only and the category's files are scored with it; every file's held-out
  raw score is summed into one normalised corpus figure (``mlctl.detect.evaluate.
  leave_one_group_out``). It estimates the score on series of a kind never seen when choosing.
* **in-sample**: one threshold optimised over the whole corpus, as NAB's scoreboard does (and
  as the published peers are scored); an upper bound, not the headline.

Unless ``--quick``, variants of the default detector's parameters (level counts, the ensemble
over level counts) are scored the same way, and a leave-one-category-out figure is given where
the level count too is chosen on the other categories, per fold. The default detector is timed
in one process (one core): the wall time of scoring every point, points per second, and the
median time of one ``score_one`` call and of one ``update`` call on a real series after a
warm-up. With ``--all`` every registered detector is scored too.

Usage:
    python benchmarks/detect_nab.py [--data DIR] [--labels FILE] [--all] [--quick] [--jobs 2] [--write-docs]
DIR defaults to $MLCTL_BENCH_DATA/nab, else ../shared/data/nab beside the repository. Writes
benchmarks/results/detect_nab.json and, with --write-docs, the detect_nab section of
docs/benchmarks.md. Exits cleanly (status 0, a message) when the data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, machine, shown_path, write_section  # noqa: E402 - benchmarks/ is not a package

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
TARGET_SCORE = 72.0  # standard profile, held out (issue: >= 72 on all 58 series)
TARGET_SECONDS_365K = 10.0
TARGET_SCORE_ONE_US = 100.0
# Published NAB scoreboard (standard / low FP / low FN): the whole 58-file corpus, and the same
# detectors' published outputs re-scored on the 44 shared series (threshold re-optimised on them).
PUBLISHED_58 = {
    "ARTime": 74.9,
    "Numenta HTM": 70.5,
    "CAD OSE": 69.9,
    "KNN CAD": 58.0,
    "Relative Entropy": 54.6,
    "Random Cut Forest": 51.7,
    "Twitter ADVec": 47.1,
    "Windowed Gaussian": 39.6,
}
PUBLISHED_44 = {
    "ARTime": (75.4, 65.5, 80.8),
    "Numenta HTM": (71.4, 65.4, 75.3),
    "CAD OSE": (72.8, 70.1, 75.9),
    "KNN CAD": (62.3, 47.5, 68.8),
    "Windowed Gaussian": (41.5, 16.5, 51.4),
}
TIMING_FILE = "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv"
# the default detector's variants scored beside it (all judged by the leave-one-category-out figure)
VARIANTS: dict[str, dict[str, Any]] = {
    "bins 5": {"bins": 5},
    "bins 6": {"bins": 6},
    "bins 8": {"bins": 8},
    "bins 9": {"bins": 9},
    "spread 1 (levels 6..8 averaged)": {"spread": 1},
    "spread 2 (levels 5..9 averaged)": {"spread": 2},
    "spread 1, suppress_from 0.5": {"spread": 1, "suppress_from": 0.5},
    "spread 2, suppress_from 0.5": {"spread": 2, "suppress_from": 0.5},
    "suppress_from 0.5 (quiet only after reports >= 0.5, as before)": {"suppress_from": 0.5},
}
# level counts the nested check chooses from, per fold
LEVEL_CHOICES = (5, 6, 7, 8, 9)
# measured independently on all 58 series (14 of them not in ../shared/data), standard profile, for
# the default detector before leave-one-category-out figures were kept (quiet period after scores >= 0.5)
INDEPENDENT_58 = 69.2


def default_data() -> Path:
    env = os.environ.get("MLCTL_BENCH_DATA")
    return Path(env) / "nab" if env else REPO.parent / "shared" / "data" / "nab"


def run_detector(
    name: str, data: Path, labels: Path, jobs: int, params: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any]:
    """Score ``name`` over the corpus: in-sample and leave-one-category-out figures (and the prepared corpus)."""
    from mlctl.detect.base import make_detector
    from mlctl.detect.evaluate import corpus_scores, leave_one_group_out
    from mlctl.detect.nab import load_windows, prepare_corpus, score_corpus

    params = dict(params or {})
    start = time.perf_counter()
    corpus, seconds = corpus_scores(data / "data", labels, detector=name, params=params, jobs=jobs)
    wall = time.perf_counter() - start
    prepared = prepare_corpus(corpus, load_windows(labels))
    inside = {p: score_corpus(prepared, profile=p) for p in PROFILES}
    loco = {p: leave_one_group_out({name: prepared}, profile=p) for p in PROFILES}
    points = sum(len(ts) for ts, _ in corpus.values())
    std = inside["standard"]
    row = {
        "detector": name,
        "params": make_detector(name, **params).get_params(),
        "files": len(corpus),
        "points": points,
        "loco_scores": {p: r.score for p, r in loco.items()},
        "scores": {p: r.score for p, r in inside.items()},
        "thresholds": {p: r.threshold for p, r in inside.items()},
        "default_threshold": type(make_detector(name)).default_threshold,
        "loco_detected_windows": loco["standard"].detected_windows,
        "loco_fp": loco["standard"].fp,
        "detected_windows": std.detected_windows,
        "windows": std.windows,
        "fp": std.fp,
        "detect_seconds": seconds,
        "wall_seconds": wall,
        "jobs": jobs,
        "points_per_s": points / seconds if seconds else None,
        "leave_one_category_out": {p: loco_folds(r) for p, r in loco.items()},
    }
    return row, prepared


def loco_folds(result: Any) -> list[dict[str, Any]]:
    """The per-category rows of a leave-one-group-out result, as plain data."""
    return [
        {
            "category": g.group,
            "files": g.files,
            "candidate": g.candidate,
            "threshold_from_others": g.threshold,
            "score": g.score,
            "score_own_threshold": g.own_score,
            "detected_windows": g.detected_windows,
            "windows": g.windows,
            "fp": g.fp,
        }
        for g in result.groups
    ]


def time_calls(name: str, data: Path, warmup: int = 2000, calls: int = 2000) -> dict[str, float]:
    """Median microseconds of score_one and of update on a real series, after ``warmup`` points."""
    from mlctl.detect.base import make_detector
    from mlctl.detect.evaluate import read_series

    _, values = read_series(data / "data" / TIMING_FILE)
    det = make_detector(name)
    det.score(values[:warmup])
    rest = [float(v) for v in values[warmup : warmup + calls]]
    score_one, update = [], []
    clock = time.perf_counter_ns
    for v in rest:
        t0 = clock()
        det.score_one(v)
        t1 = clock()
        det.update(v)
        t2 = clock()
        score_one.append((t1 - t0) / 1000)
        update.append((t2 - t1) / 1000)
    return {
        "score_one_median_us": statistics.median(score_one),
        "update_median_us": statistics.median(update),
        "update_p99_us": sorted(update)[int(0.99 * (len(update) - 1))],
        "timed_calls": len(rest),
    }


def variants(data: Path, labels: Path, jobs: int, default_row: dict[str, Any], default_prep: Any) -> dict[str, Any]:
    """The default detector's parameter variants, each scored in-sample and leave-one-category-out, and
    the leave-one-category-out figure where the level count is chosen per fold among ``LEVEL_CHOICES``."""
    from mlctl.detect.base import DEFAULT_DETECTOR
    from mlctl.detect.evaluate import leave_one_group_out

    p = default_row["params"]
    shown = ", ".join(f"{k} {p[k]}" for k in ("bins", "spread") if k in p)
    rows = [{"label": f"default: {shown}", "params": {}, **pick(default_row)}]
    prepared = {}
    for label, params in VARIANTS.items():
        row, prep = run_detector(DEFAULT_DETECTOR, data, labels, jobs=jobs, params=params)
        rows.append({"label": label, "params": params, **pick(row)})
        prepared[label] = prep
        print(f"  {label}: LOCO {row['loco_scores']}, in-sample {row['scores']}", file=sys.stderr)
    default_bins = default_row["params"]["bins"]
    candidates = {f"bins {default_bins}": default_prep}
    candidates.update({f"bins {k}": prepared[f"bins {k}"] for k in LEVEL_CHOICES if k != default_bins})
    chosen = {p: leave_one_group_out(candidates, profile=p) for p in PROFILES}
    return {
        "rows": rows,
        "level_count_chosen_per_fold": {
            "choices": sorted(int(c.split()[1]) for c in candidates),
            "scores": {p: r.score for p, r in chosen.items()},
            "folds": {p: loco_folds(r) for p, r in chosen.items()},
        },
    }


def pick(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("loco_scores", "scores", "points_per_s", "loco_detected_windows", "loco_fp")}


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def report(result: dict[str, Any]) -> str:
    main = result["rows"][0]
    n_cat = len(main["leave_one_category_out"]["standard"])
    text = (
        f"**Headline: leave-one-category-out (held out).** Each of the {n_cat} categories is scored at the "
        f"threshold optimised on the other {n_cat - 1} only, and every file's held-out raw score is summed into one "
        "normalised figure: an estimate for series of a kind not seen when choosing. **In-sample**: one threshold "
        "optimised over the whole corpus, as NAB's scoreboard and the published figures below are scored; an upper "
        "bound, not the headline.\n\n"
    )
    rows = [
        "| detector | held out: standard | low FP | low FN | in-sample: standard | low FP | low FN "
        "| windows found (held out) | FP (held out) | points/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        h, s = r["loco_scores"], r["scores"]
        rate = f"{r['points_per_s']:,.0f}" if r["points_per_s"] else "-"
        rows.append(
            f"| mlctl {r['detector']}{' (default)' if r['detector'] == result['default'] else ''} | "
            f"**{fmt(h['standard'])}** | {fmt(h['reward_low_FP_rate'])} | {fmt(h['reward_low_FN_rate'])} | "
            f"{fmt(s['standard'])} | {fmt(s['reward_low_FP_rate'])} | {fmt(s['reward_low_FN_rate'])} | "
            f"{r['loco_detected_windows']}/{r['windows']} | {r['loco_fp']} | {rate} |"
        )
    for name, (std, lfp, lfn) in PUBLISHED_44.items():
        rows.append(f"| {name} (published outputs, re-scored) | - | - | - | {std} | {lfp} | {lfn} | - | - | - |")
    text += "\n".join(rows)
    text += (
        "\n\nPublished peers are in-sample figures (their outputs re-scored on these series, threshold re-optimised "
        "on them); no held-out figure exists for them. On NAB's whole 58-file corpus (standard profile, in-sample): "
        + ", ".join(f"{k} {v}" for k, v in PUBLISHED_58.items())
        + f". The default detector measured independently on all 58 series (14 not in {result['data']}), before "
        f"this held-out check was kept: {INDEPENDENT_58}."
    )
    text += (
        "\n\nHeld-out scoring of the default detector per category (standard profile; no score where a category "
        "has no labelled anomalies, its false positives still count in the total):\n\n"
        "| held-out category | files | threshold (from the others) | score | score at its own best threshold "
        "| windows found | FP |\n|---|---|---|---|---|---|---|\n"
    )
    text += "\n".join(
        f"| {r['category']} | {r['files']} | {r['threshold_from_others']:.3f} | {fmt(r['score'])} | "
        f"{fmt(r['score_own_threshold'])} | {r['detected_windows']}/{r['windows']} | {r['fp']} |"
        for r in main["leave_one_category_out"]["standard"]
    )
    var = result.get("variants")
    if var:
        text += (
            "\n\nVariants of the default detector, judged by the held-out figure (the default is chosen on it, "
            "never on the in-sample one):\n\n"
            "| parameters | held out: standard | low FP | low FN | in-sample: standard | low FP | low FN "
            "| points/s |\n|---|---|---|---|---|---|---|---|\n"
        )
        text += "\n".join(
            f"| {v['label']} | {fmt(v['loco_scores']['standard'])} | {fmt(v['loco_scores']['reward_low_FP_rate'])} | "
            f"{fmt(v['loco_scores']['reward_low_FN_rate'])} | {fmt(v['scores']['standard'])} | "
            f"{fmt(v['scores']['reward_low_FP_rate'])} | {fmt(v['scores']['reward_low_FN_rate'])} | "
            f"{v['points_per_s']:,.0f} |"
            for v in var["rows"]
        )
        nested = var["level_count_chosen_per_fold"]
        picks = ", ".join(f"{f['category']}: {f['candidate']}" for f in nested["folds"]["standard"])
        sc = nested["scores"]
        text += (
            f"\n\nWith the level count also chosen on the other categories (among {nested['choices']}, per fold, "
            f"with the threshold): held out {fmt(sc['standard'])} standard, {fmt(sc['reward_low_FP_rate'])} low FP, "
            f"{fmt(sc['reward_low_FN_rate'])} low FN (standard picks: {picks})."
        )
    d = result["timing"]
    per_365k = 365_000 / main["points_per_s"] if main["points_per_s"] else None
    text += (
        f"\n\nCorpus: {main['files']} NAB series, {main['points']:,} points ({result['data']}). Default detector "
        f"on one core: {main['detect_seconds']:.1f} s for all points, {main['points_per_s']:,.0f} points/s, "
        f"so {fmt(per_365k)} s for NAB's 365k points (target <= {TARGET_SECONDS_365K:.0f} s); "
        f"score_one median {d['score_one_median_us']:.1f} us (target <= {TARGET_SCORE_ONE_US:.0f} us), "
        f"update (score + learn) median {d['update_median_us']:.1f} us, p99 {d['update_p99_us']:.1f} us, over "
        f"{d['timed_calls']} calls on {TIMING_FILE} after a 2,000-point warm-up. NAB score target: >= "
        f"{TARGET_SCORE:.0f} (standard profile, held out): "
        f"{'met' if (main['loco_scores']['standard'] or 0.0) >= TARGET_SCORE else 'not met'}. "
        "Variants and other detectors were run with "
        f"{result['jobs']} processes; their points/s is over the detection time of that run."
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="NAB folder (with data/ and labels/)")
    parser.add_argument("--labels", type=Path, default=None, help="default: DATA/labels/combined_windows.json")
    parser.add_argument("--all", action="store_true", help="also score every other registered detector")
    parser.add_argument("--quick", action="store_true", help="skip the default detector's parameter variants")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the variants and other detectors")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    data = args.data or default_data()
    labels = args.labels or data / "labels" / "combined_windows.json"
    if not (data / "data").is_dir() or not labels.is_file():
        print(f"NAB data not found under {data}: nothing to do (set --data or MLCTL_BENCH_DATA)", file=sys.stderr)
        return
    from mlctl.detect.base import DEFAULT_DETECTOR, available_detectors

    first, prepared = run_detector(DEFAULT_DETECTOR, data, labels, jobs=1)  # one process: the timed run
    rows = [first]
    print(
        f"{DEFAULT_DETECTOR}: held out {first['loco_scores']}, in-sample {first['scores']} "
        f"in {first['detect_seconds']:.1f} s",
        file=sys.stderr,
    )
    result: dict[str, Any] = {
        "benchmark": "detect_nab",
        "python": platform.python_version(),
        "machine": machine(),
        "data": shown_path(data),
        "default": DEFAULT_DETECTOR,
        "jobs": args.jobs,
        "headline": "loco_scores: leave-one-category-out (threshold chosen without the scored category)",
    }
    if not args.quick:
        result["variants"] = variants(data, labels, args.jobs, first, prepared)
    if args.all:
        for name in available_detectors():
            if name != DEFAULT_DETECTOR:
                rows.append(run_detector(name, data, labels, jobs=args.jobs)[0])
                print(f"{name}: held out {rows[-1]['loco_scores']}, in-sample {rows[-1]['scores']}", file=sys.stderr)
    result.update(
        {
            "rows": rows,
            "timing": time_calls(DEFAULT_DETECTOR, data),
            "published_58_standard": PUBLISHED_58,
            "published_44": PUBLISHED_44,
            "independent_58_standard": INDEPENDENT_58,
            "target": {
                "nab_standard_held_out_min": TARGET_SCORE,
                "seconds_365k_max": TARGET_SECONDS_365K,
                "score_one_us_max": TARGET_SCORE_ONE_US,
            },
        }
    )
    result["target_met"] = {
        "nab_standard_held_out": (first["loco_scores"]["standard"] or 0.0) >= TARGET_SCORE,
        "seconds_365k": bool(first["points_per_s"]) and 365_000 / first["points_per_s"] <= TARGET_SECONDS_365K,
        "score_one_us": result["timing"]["score_one_median_us"] <= TARGET_SCORE_ONE_US,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "detect_nab.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    print(text)
    if args.write_docs:
        write_section("detect_nab", text, result)


if __name__ == "__main__":
    main()
