"""NAB (Numenta Anomaly Benchmark) score and speed of mlctl's anomaly detectors.

Runs the default detector (``mlctl.detect.base.DEFAULT_DETECTOR``) through ``mlctl.detect.evaluate`` over a NAB-layout
corpus (``DATA/data/<category>/<file>.csv`` and ``DATA/labels/combined_windows.json``) and scores
it with NAB's rules under its three profiles, the threshold optimised over the corpus. It is
timed in one process (one core): the wall time of scoring every point, points per second, and
the median time of one ``score_one`` call and of one ``update`` call on a real series after a
warm-up. With ``--all`` every registered detector is scored too.

Usage:
    python benchmarks/detect_nab.py [--data DIR] [--labels FILE] [--all] [--jobs 2] [--write-docs]
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
TARGET_SCORE = 70.0
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


def default_data() -> Path:
    env = os.environ.get("MLCTL_BENCH_DATA")
    return Path(env) / "nab" if env else REPO.parent / "shared" / "data" / "nab"


def run_detector(name: str, data: Path, labels: Path, jobs: int) -> dict[str, Any]:
    from mlctl.detect.base import make_detector
    from mlctl.detect.evaluate import evaluate

    start = time.perf_counter()
    report = evaluate(data / "data", labels, detector=name, profiles=PROFILES, jobs=jobs)
    wall = time.perf_counter() - start
    return {
        "detector": name,
        "params": make_detector(name).get_params(),
        "files": report.files,
        "points": report.rows,
        "scores": {p: r.score for p, r in report.profiles.items()},
        "thresholds": {p: r.threshold for p, r in report.profiles.items()},
        "default_threshold": type(make_detector(name)).default_threshold,
        "detected_windows": report.profiles["standard"].detected_windows,
        "windows": report.profiles["standard"].windows,
        "fp": report.profiles["standard"].fp,
        "detect_seconds": report.detect_seconds,
        "wall_seconds": wall,
        "jobs": jobs,
        "points_per_s": report.rows / report.detect_seconds if report.detect_seconds else None,
    }


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


def leave_one_category_out(name: str, data: Path, labels: Path) -> dict[str, dict[str, Any]]:
    """Per category: the standard threshold optimised on the other categories, scored on this one."""
    from mlctl.detect.base import make_detector
    from mlctl.detect.evaluate import discover, read_series
    from mlctl.detect.nab import load_windows, prepare_corpus, score_corpus

    windows = load_windows(labels)
    corpus = {}
    for key, path in discover(data / "data").items():
        if key in windows:
            ts, values = read_series(path)
            corpus[key] = (ts, make_detector(name).score(values))
    out: dict[str, dict[str, Any]] = {}
    for cat in sorted({k.split("/")[0] for k in corpus}):
        train = {k: v for k, v in corpus.items() if not k.startswith(cat + "/")}
        test = {k: v for k, v in corpus.items() if k.startswith(cat + "/")}
        thr = score_corpus(prepare_corpus(train, windows)).threshold
        held = score_corpus(prepare_corpus(test, windows), threshold=thr)
        own = score_corpus(prepare_corpus(test, windows))
        out[cat] = {
            "files": len(test),
            "threshold_from_others": thr,
            "score": held.score,
            "score_own_threshold": own.score,
            "detected_windows": held.detected_windows,
            "windows": held.windows,
            "fp": held.fp,
        }
    return out


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def report(result: dict[str, Any]) -> str:
    rows = [
        "| detector | standard | low FP | low FN | threshold (standard) | windows found | FP | points/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s = r["scores"]
        rate = f"{r['points_per_s']:,.0f}" if r["points_per_s"] else "-"
        rows.append(
            f"| mlctl {r['detector']}{' (default)' if r['detector'] == result['default'] else ''} | "
            f"{fmt(s['standard'])} | {fmt(s['reward_low_FP_rate'])} | {fmt(s['reward_low_FN_rate'])} | "
            f"{r['thresholds']['standard']:.3f} | {r['detected_windows']}/{r['windows']} | {r['fp']} | "
            f"{rate} |"
        )
    for name, (std, lfp, lfn) in PUBLISHED_44.items():
        rows.append(f"| {name} (published outputs, re-scored) | {std} | {lfp} | {lfn} | - | - | - | - |")
    d = result["timing"]
    main = result["rows"][0]
    per_365k = 365_000 / main["points_per_s"] if main["points_per_s"] else None
    text = "\n".join(rows)
    text += (
        f"\n\nCorpus: {main['files']} NAB series, {main['points']:,} points ({result['data']}). Default detector "
        f"on one core: {main['detect_seconds']:.1f} s for all points, {main['points_per_s']:,.0f} points/s, "
        f"so {fmt(per_365k)} s for NAB's 365k points (target <= {TARGET_SECONDS_365K:.0f} s); "
        f"score_one median {d['score_one_median_us']:.1f} us (target <= {TARGET_SCORE_ONE_US:.0f} us), "
        f"update (score + learn) median {d['update_median_us']:.1f} us, p99 {d['update_p99_us']:.1f} us, over "
        f"{d['timed_calls']} calls on {TIMING_FILE} after a 2,000-point warm-up. NAB score target: >= "
        f"{TARGET_SCORE:.0f} (standard profile). Other detectors were run with {result['jobs']} processes; "
        "their points/s is over the wall time of that run."
    )
    loco = result.get("leave_one_category_out")
    if loco:
        text += (
            "\n\nLeave-one-category-out check of the default detector (standard profile): the threshold is "
            "optimised on the other four categories and the held-out category is scored with it "
            "(no score where a category has no labelled anomalies).\n\n"
            "| held-out category | files | threshold (from the others) | score | score at its own best threshold "
            "| windows found | FP |\n|---|---|---|---|---|---|---|\n"
        )
        text += "\n".join(
            f"| {cat} | {r['files']} | {r['threshold_from_others']:.3f} | {fmt(r['score'])} | "
            f"{fmt(r['score_own_threshold'])} | {r['detected_windows']}/{r['windows']} | {r['fp']} |"
            for cat, r in loco.items()
        )
    text += (
        "\n\nPublished scoreboard on the whole 58-file corpus (standard profile): "
        + ", ".join(f"{k} {v}" for k, v in PUBLISHED_58.items())
        + "."
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="NAB folder (with data/ and labels/)")
    parser.add_argument("--labels", type=Path, default=None, help="default: DATA/labels/combined_windows.json")
    parser.add_argument("--all", action="store_true", help="also score every other registered detector")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the other detectors (--all)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    data = args.data or default_data()
    labels = args.labels or data / "labels" / "combined_windows.json"
    if not (data / "data").is_dir() or not labels.is_file():
        print(f"NAB data not found under {data}: nothing to do (set --data or MLCTL_BENCH_DATA)", file=sys.stderr)
        return
    from mlctl.detect.base import DEFAULT_DETECTOR, available_detectors

    rows = [run_detector(DEFAULT_DETECTOR, data, labels, jobs=1)]  # one process: the timed run
    print(f"{DEFAULT_DETECTOR}: {rows[0]['scores']} in {rows[0]['detect_seconds']:.1f} s", file=sys.stderr)
    if args.all:
        for name in available_detectors():
            if name != DEFAULT_DETECTOR:
                rows.append(run_detector(name, data, labels, jobs=args.jobs))
                print(f"{name}: {rows[-1]['scores']}", file=sys.stderr)
    result = {
        "benchmark": "detect_nab",
        "python": platform.python_version(),
        "machine": machine(),
        "data": shown_path(data),
        "default": DEFAULT_DETECTOR,
        "jobs": args.jobs,
        "rows": rows,
        "timing": time_calls(DEFAULT_DETECTOR, data),
        "leave_one_category_out": leave_one_category_out(DEFAULT_DETECTOR, data, labels),
        "published_58_standard": PUBLISHED_58,
        "published_44": PUBLISHED_44,
        "target": {
            "nab_standard_min": TARGET_SCORE,
            "seconds_365k_max": TARGET_SECONDS_365K,
            "score_one_us_max": TARGET_SCORE_ONE_US,
        },
    }
    main_row = rows[0]
    result["target_met"] = {
        "nab_standard": (main_row["scores"]["standard"] or 0.0) >= TARGET_SCORE,
        "seconds_365k": bool(main_row["points_per_s"]) and 365_000 / main_row["points_per_s"] <= TARGET_SECONDS_365K,
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
