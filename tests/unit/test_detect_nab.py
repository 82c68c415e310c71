"""NAB scoring on small corpora whose scores are worked out by hand in the comments.

Notation: S(p) = 2 / (1 + exp(5 p)) - 1 = -tanh(2.5 p), so S(-1) = tanh(2.5) = 0.98661.
A detection at row i of a window [lo, hi] (width w = hi - lo + 1) is worth
A_TP * S(-(hi - i + 1) / w) / S(-1) = A_TP * tanh(2.5 (hi - i + 1) / w) / tanh(2.5).
A false positive at row i after a window ending at hi costs A_FP * S((i - hi) / (w - 1)),
and the full -A_FP before any window. Files of 20 rows have floor(0.15 * 20) = 3 probation rows.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlctl.core.errors import ConfigError, NotFound, UsageError, exit_code_for
from mlctl.detect import nab

T0 = datetime(2020, 1, 1)
STD = nab.PROFILES["standard"]
TANH25 = math.tanh(2.5)


def stamps(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=5 * i) for i in range(n)]


def window(lo: int, hi: int) -> tuple[datetime, datetime]:
    return (T0 + timedelta(minutes=5 * lo), T0 + timedelta(minutes=5 * hi))


def tp_worth(i: int, lo: int, hi: int) -> float:
    return math.tanh(2.5 * (hi - i + 1) / (hi - lo + 1)) / TANH25


def scores_at(n: int, hits: dict[int, float]) -> np.ndarray:
    s = np.zeros(n)
    for i, v in hits.items():
        s[i] = v
    return s


# One 20-row file, one window over rows 10..13 (width 4), probation rows 0..2.
N = 20
W = [window(10, 13)]


def score_one(hits: dict[int, float], threshold: float = 0.5, profile: str = "standard") -> nab.FileScore:
    return nab.score_file(stamps(N), scores_at(N, hits), W, threshold, profile)


# --------------------------------------------------------------------------- the building blocks


def test_scaled_sigmoid_matches_the_reference_values() -> None:
    got = nab.scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 3.01, 50.0]))
    want = [TANH25, math.tanh(1.25), 0.0, -math.tanh(1.25), -TANH25, -math.tanh(7.5), -1.0, -1.0]
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(
    ("rows", "expected"), [(1, 0), (6, 0), (7, 1), (20, 3), (100, 15), (4032, 604), (5000, 750), (15833, 750)]
)
def test_probation_is_fifteen_percent_capped_at_750(rows: int, expected: int) -> None:
    assert nab.probation_length(rows) == expected


def test_profiles_are_nabs() -> None:
    assert {n: (p.a_tp, p.a_fp, p.a_fn) for n, p in nab.PROFILES.items()} == {
        "standard": (1.0, 0.11, 1.0),
        "reward_low_FP_rate": (1.0, 0.22, 1.0),
        "reward_low_FN_rate": (1.0, 0.11, 2.0),
    }
    with pytest.raises(UsageError) as err:
        nab.get_profile("lenient")
    assert "standard" in (err.value.hint or "")


# --------------------------------------------------------------------------- one file, one window


def test_detection_at_window_start_is_worth_a_full_true_positive() -> None:
    r = score_one({10: 1.0})
    # position -(13 - 10 + 1) / 4 = -1 -> S(-1) / S(-1) = 1
    assert r.score == pytest.approx(1.0)
    # 17 scored rows: 4 in the window (1 detected), 13 outside (none detected)
    assert (r.tp, r.fn, r.fp, r.tn) == (1, 3, 0, 13)
    assert (r.windows, r.detected_windows, r.probation, r.rows) == (1, 1, 3, 20)


def test_detection_in_the_middle_and_at_the_end_are_worth_less() -> None:
    middle = score_one({12: 1.0})
    end = score_one({13: 1.0})
    # row 12: p = -2/4 -> tanh(1.25)/tanh(2.5) = 0.85980; row 13: p = -1/4 -> tanh(0.625)/tanh(2.5) = 0.56213
    assert middle.score == pytest.approx(math.tanh(1.25) / TANH25)
    assert end.score == pytest.approx(math.tanh(0.625) / TANH25)
    assert end.score == pytest.approx(0.56213, abs=1e-5)
    assert 1.0 > middle.score > end.score > 0


def test_only_the_earliest_detection_of_a_window_counts() -> None:
    r = score_one({11: 0.9, 13: 0.8})
    # row 11: p = -3/4 -> tanh(1.875)/tanh(2.5); row 13 adds nothing but is still a TP row
    assert r.score == pytest.approx(math.tanh(1.875) / TANH25)
    assert (r.tp, r.fn) == (2, 2)


def test_missed_window_costs_a_false_negative() -> None:
    r = score_one({})
    assert r.score == -1.0
    assert (r.tp, r.fn, r.fp, r.tn, r.detected_windows) == (0, 4, 0, 13, 0)


def test_false_positive_before_any_window_costs_the_full_weight() -> None:
    r = score_one({5: 1.0})
    # -0.11 for the FP, -1 for the missed window
    assert r.score == pytest.approx(-1.11)
    assert (r.fp, r.tn) == (1, 12)


def test_false_positive_after_a_window_is_weighted_by_its_distance() -> None:
    near = score_one({10: 1.0, 14: 1.0})
    far = score_one({10: 1.0, 16: 1.0})
    # row 14: p = (14 - 13) / (4 - 1) = 1/3 -> 1 - 0.11 tanh(5/6); row 16: p = 1 -> 1 - 0.11 tanh(2.5)
    assert near.score == pytest.approx(1 - 0.11 * math.tanh(2.5 / 3))
    assert far.score == pytest.approx(1 - 0.11 * TANH25)
    assert near.score > far.score


def test_false_positive_more_than_three_window_lengths_after_costs_the_full_weight() -> None:
    # window rows 5..6 (width 2, denominator 1): row 9 is p = 3 (not beyond), row 10 is p = 4 -> -1
    w = [window(5, 6)]
    at3 = nab.score_file(stamps(N), scores_at(N, {5: 1, 9: 1}), w, 0.5)
    at4 = nab.score_file(stamps(N), scores_at(N, {5: 1, 10: 1}), w, 0.5)
    assert at3.score == pytest.approx(1 - 0.11 * math.tanh(7.5))
    assert at4.score == pytest.approx(1 - 0.11)


def test_false_positive_after_a_one_row_window_costs_the_full_weight() -> None:
    r = nab.score_file(stamps(N), scores_at(N, {8: 1, 9: 1}), [window(8, 8)], 0.5)
    # the lone row is the window's first row: +1; row 9 has no window length to scale by: -0.11
    assert r.score == pytest.approx(0.89)


def test_probation_rows_are_not_scored() -> None:
    r = score_one({1: 1.0, 10: 1.0})
    # row 1 is in probation: neither an FP nor a TN
    assert r.score == pytest.approx(1.0)
    assert (r.tp, r.fp, r.tn, r.fn) == (1, 0, 13, 3)


def test_a_window_inside_probation_is_not_scored() -> None:
    # 40 rows -> 6 probation rows; window rows 1..3 lies wholly inside it
    r = nab.score_file(stamps(40), np.zeros(40), [window(1, 3)], 0.5)
    assert r.score == 0.0
    assert r.null == 0.0 and r.perfect == 1.0  # perfect counts every labelled window, as NAB's does
    assert (r.tp, r.fn, r.detected_windows) == (0, 0, 0)


def test_a_window_starting_inside_probation_is_scored_from_probation_on() -> None:
    # 20 rows, probation 0..2, window 1..4 (width 4): rows 3 and 4 are scored; row 3 is p = -2/4
    r = nab.score_file(stamps(N), scores_at(N, {3: 1.0}), [window(1, 4)], 0.5)
    assert r.score == pytest.approx(math.tanh(1.25) / TANH25)
    assert (r.tp, r.fn, r.null) == (1, 1, -1.0)


def test_window_bounds_between_rows_cover_the_rows_inside() -> None:
    # bounds 49 minutes and 66 minutes cover rows 10..13 exactly like the exact bounds 50 and 65
    w = [(T0 + timedelta(minutes=49), T0 + timedelta(minutes=66))]
    assert nab.score_file(stamps(N), scores_at(N, {10: 1}), w, 0.5).score == pytest.approx(1.0)


def test_each_profile_weights_the_same_detections_differently() -> None:
    hits = {5: 1.0, 10: 1.0}  # an FP before the window and a TP at its start
    got = {p: score_one(hits, profile=p).score for p in nab.PROFILES}
    assert got == pytest.approx({"standard": 0.89, "reward_low_FP_rate": 0.78, "reward_low_FN_rate": 0.89})
    missed = {p: score_one({5: 1.0}, profile=p).score for p in nab.PROFILES}
    # -A_FP - A_FN
    assert missed == pytest.approx({"standard": -1.11, "reward_low_FP_rate": -1.22, "reward_low_FN_rate": -2.11})


def test_detection_is_score_at_or_above_threshold() -> None:
    assert score_one({10: 0.5}, threshold=0.5).tp == 1
    assert score_one({10: 0.5}, threshold=0.5000001).tp == 0


def test_nan_scores_are_never_detections() -> None:
    s = scores_at(N, {10: 1.0})
    s[5] = np.nan
    assert nab.score_file(stamps(N), s, W, 0.0).fp == 12  # every scored outside row but the NaN one
    corpus = {"a.csv": (stamps(N), s)}
    assert nab.optimize_threshold(corpus, {"a.csv": W}) == 1.0


# --------------------------------------------------------------------------- a corpus, one threshold


def two_files() -> tuple[dict[str, tuple[list[datetime], np.ndarray]], dict[str, list]]:
    # file a: TP at its window start (score 0.9) and an FP before it (0.6)
    # file b: an FP before its window (0.8) and a TP in the middle of its window (0.6)
    corpus = {
        "cat/a.csv": (stamps(N), scores_at(N, {10: 0.9, 5: 0.6})),
        "cat/b.csv": (stamps(N), scores_at(N, {5: 0.8, 12: 0.6})),
    }
    return corpus, {"cat/a.csv": W, "cat/b.csv": W}


def test_one_threshold_maximises_the_corpus_total() -> None:
    corpus, windows = two_files()
    # candidates: 1.1 -> -2;  0.9 -> 1 - 1 = 0;  0.8 -> 0 - 0.11;  0.6 -> 1 - 0.11 + 0.85980 - 0.11 = 1.63980;
    # 0.0 -> every other row becomes an FP, far worse. File a alone would pick 0.9 (1.0 > 0.89).
    mid = math.tanh(1.25) / TANH25
    assert nab.optimize_threshold(corpus, windows, "standard") == 0.6
    assert nab.optimize_threshold({"cat/a.csv": corpus["cat/a.csv"]}, windows, "standard") == 0.9
    r = nab.score_corpus(corpus, windows, "standard")
    assert r.threshold == 0.6
    assert r.raw == pytest.approx(1.0 - 0.11 + mid - 0.11)
    assert [f.score for f in r.files] == pytest.approx([0.89, mid - 0.11])
    assert (r.null, r.perfect) == (-2.0, 2.0)
    assert r.score == pytest.approx(100 * (r.raw + 2) / 4)
    assert (r.tp, r.fp, r.detected_windows, r.windows) == (2, 2, 2, 2)


def test_a_given_threshold_is_used_as_is() -> None:
    corpus, windows = two_files()
    r = nab.score_corpus(corpus, windows, "standard", threshold=0.9)
    assert r.threshold == 0.9
    assert r.raw == pytest.approx(0.0)  # a's TP (+1) and b's missed window (-1)
    assert r.score == pytest.approx(50.0)


def test_the_threshold_depends_on_the_profile() -> None:
    # 40 rows (6 probation), window rows 20..23; a TP at the window's last row (score 0.9, worth
    # e = tanh(0.625)/tanh(2.5) = 0.56213) and k FPs before the window (score 0.95).
    # Candidates: 1.1 -> -A_FN;  0.95 -> -A_FN - k A_FP;  0.9 -> e - k A_FP;  0.0 -> far worse.
    e = math.tanh(0.625) / TANH25
    w = {"a.csv": [window(20, 23)]}

    def corpus(k: int) -> dict:
        return {"a.csv": (stamps(40), scores_at(40, {23: 0.9, **{8 + j: 0.95 for j in range(k)}}))}

    # k = 6: every profile detects at 0.9
    got = {p: nab.score_corpus(corpus(6), w, p) for p in nab.PROFILES}
    assert {p: r.threshold for p, r in got.items()} == dict.fromkeys(nab.PROFILES, 0.9)
    assert got["standard"].raw == pytest.approx(e - 0.66)
    assert got["reward_low_FP_rate"].raw == pytest.approx(e - 1.32)
    assert got["reward_low_FN_rate"].raw == pytest.approx(e - 0.66)
    # normalised between null (-A_FN) and perfect (+1)
    assert got["standard"].score == pytest.approx(100 * (e - 0.66 + 1) / 2)
    assert got["reward_low_FP_rate"].score == pytest.approx(100 * (e - 1.32 + 1) / 2)
    assert got["reward_low_FN_rate"].score == pytest.approx(100 * (e - 0.66 + 2) / 3)
    # k = 8: low FP would score e - 1.76 = -1.198 < -1, so it detects nothing; standard still detects
    got = {p: nab.score_corpus(corpus(8), w, p) for p in nab.PROFILES}
    assert got["reward_low_FP_rate"].threshold == nab.NO_DETECTION_THRESHOLD
    assert got["reward_low_FP_rate"].raw == -1.0 and got["reward_low_FP_rate"].score == 0.0
    assert got["standard"].threshold == got["reward_low_FN_rate"].threshold == 0.9
    assert got["standard"].raw == pytest.approx(e - 0.88)


def test_null_and_perfect_detectors_score_0_and_100() -> None:
    windows = {"a.csv": [window(5, 8), window(12, 15)], "b.csv": [window(9, 10)], "c.csv": []}
    perfect = {
        "a.csv": (stamps(N), scores_at(N, {5: 1, 12: 1})),
        "b.csv": (stamps(N), scores_at(N, {9: 1})),
        "c.csv": (stamps(N), np.zeros(N)),
    }
    nothing = {k: (ts, np.full(N, np.nan)) for k, (ts, _) in perfect.items()}  # NaN: never a detection
    constant = {k: (ts, np.zeros(N)) for k, (ts, _) in perfect.items()}
    for profile in nab.PROFILES:
        p = nab.score_corpus(perfect, windows, profile)
        z = nab.score_corpus(nothing, windows, profile)
        assert p.score == pytest.approx(100.0)
        assert z.score == 0.0 and z.raw == z.null
        assert nab.score_corpus(constant, windows, profile, threshold=1.0).score == 0.0
    # a constant score detects nothing at 1.1, or everything at its value; with windows this dense
    # (9 of the 51 scored rows) flagging everything beats flagging nothing under the standard profile
    c = nab.score_corpus(constant, windows, "standard")
    assert c.threshold == 0.0 and c.score is not None and c.score > 0
    for profile, prof in nab.PROFILES.items():
        assert nab.null_and_perfect(perfect, windows, profile) == (-3 * prof.a_fn, 3.0)
    rows = {f.file: f for f in nab.score_corpus(perfect, windows).files}
    assert rows["a.csv"].normalized == pytest.approx(100.0)
    assert rows["c.csv"].normalized is None  # no windows: nothing to normalise against


def test_equal_totals_keep_the_highest_threshold() -> None:
    # lowering 0.9 -> 0.8 only adds a later row of the same window: the total does not change
    corpus = {"a.csv": (stamps(N), scores_at(N, {10: 0.9, 12: 0.8}))}
    prepared = nab.prepare_corpus(corpus, {"a.csv": W})
    thresholds, totals = prepared.threshold_scores("standard")
    assert thresholds[:3].tolist() == [1.1, 0.9, 0.8]
    assert totals[1] == totals[2] == 1.0
    assert prepared.best_threshold("standard") == 0.9


def test_tied_scores_are_detected_together() -> None:
    # rows 5 (FP) and 10 (TP) share the score 0.7: no threshold separates them
    corpus = {"a.csv": (stamps(N), scores_at(N, {5: 0.7, 10: 0.7}))}
    r = nab.score_corpus(corpus, {"a.csv": W})
    assert r.threshold == 0.7 and (r.tp, r.fp) == (1, 1)
    assert r.raw == pytest.approx(0.89)


# --------------------------------------------------------------------------- against a literal scorer


def _s(p: float) -> float:
    return -1.0 if p > 3 else 2 / (1 + math.exp(5 * p)) - 1


def literal_total(files: list[tuple[np.ndarray, list[tuple[int, int]]]], threshold: float, prof: nab.Profile) -> float:
    """The NAB rules, row by row, straight from their statement."""
    total = 0.0
    for scores, wins in files:
        n = len(scores)
        prob = min(math.floor(0.15 * n), 750)
        for lo, hi in wins:
            rows = range(max(lo, prob), hi + 1)
            if not rows:
                continue
            hits = [i for i in rows if scores[i] >= threshold]
            if hits:
                total += prof.a_tp * _s(-(hi - hits[0] + 1) / (hi - lo + 1)) / _s(-1)
            else:
                total -= prof.a_fn
        for i in range(prob, n):
            if scores[i] < threshold or any(lo <= i <= hi for lo, hi in wins):
                continue
            before = [(lo, hi) for lo, hi in wins if hi < i]
            if not before:
                total -= prof.a_fp
            else:
                lo, hi = before[-1]
                total += prof.a_fp * (-1.0 if hi == lo else _s((i - hi) / (hi - lo)))
    return total


def random_corpus(rng: np.random.Generator) -> tuple[dict, dict, list]:
    corpus, windows, literal = {}, {}, []
    for f in range(int(rng.integers(1, 4))):
        n = int(rng.integers(8, 90))
        wins, at = [], int(rng.integers(0, 6))
        while at < n and len(wins) < 3:
            width = int(rng.integers(1, 9))
            if at + width > n:
                break
            wins.append((at, at + width - 1))
            at += width + int(rng.integers(1, 25))
        scores = np.round(rng.random(n), 1)  # coarse scores: plenty of ties
        key = f"c/f{f}.csv"
        corpus[key] = (stamps(n), scores)
        windows[key] = [window(lo, hi) for lo, hi in wins]
        literal.append((scores, wins))
    return corpus, windows, literal


@pytest.mark.parametrize("seed", range(40))
def test_sweep_matches_the_literal_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    corpus, windows, literal = random_corpus(rng)
    # probation rows are no candidates: NAB drops them before sorting
    all_scores = np.concatenate([s[nab.probation_length(len(s)) :] for s, _ in literal])
    candidates = [1.1, *sorted(set(all_scores.tolist()), reverse=True)]
    for profile in nab.PROFILES.values():
        totals = [literal_total(literal, t, profile) for t in candidates]
        best = max(totals)
        got = nab.score_corpus(corpus, windows, profile)
        assert literal_total(literal, got.threshold, profile) == pytest.approx(best, abs=1e-9)
        assert got.raw == pytest.approx(best, abs=1e-9)
        # ties (equal totals) go to the highest threshold
        assert got.threshold == next(t for t, v in zip(candidates, totals, strict=True) if abs(v - best) < 1e-9)
        # the swept totals agree with the literal ones at every candidate
        _, swept = nab.prepare_corpus(corpus, windows).threshold_scores(profile)
        assert swept.tolist() == pytest.approx(totals, abs=1e-9)


# --------------------------------------------------------------------------- bad input


def test_labels_file_missing(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        nab.load_windows(tmp_path / "nope.json")
    assert exit_code_for(err.value) == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"a.csv": "2020-01-01"}', "list of [start, end]"),
        ('{"a.csv": [["2020-01-01 00:00:00"]]}', "[start, end] pair"),
        ('{"a.csv": [["yesterday", "2020-01-01 00:00:00"]]}', "cannot read 'yesterday'"),
        ('{"a.csv": [["2020-01-02 00:00:00", "2020-01-01 00:00:00"]]}', "ends before it starts"),
        (
            '{"a.csv": [["2020-01-01 00:00:00", "2020-01-03 00:00:00"],'
            ' ["2020-01-02 00:00:00", "2020-01-04 00:00:00"]]}',
            "overlap",
        ),
    ],
)
def test_malformed_labels_are_config_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        nab.load_windows(path)
    assert needle in err.value.message
    assert exit_code_for(err.value) == 2


def test_labels_load_sorted_with_nab_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps(
            {
                "c/a.csv": [
                    ["2014-04-12 09:00:00.000000", "2014-04-12 10:00:00.000000"],
                    ["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"],
                ],
                "c/b.csv": [],
            }
        ),
        encoding="utf-8",
    )
    got = nab.load_windows(path)
    assert got["c/b.csv"] == []
    assert got["c/a.csv"][0] == (datetime(2014, 4, 10, 7, 15), datetime(2014, 4, 11, 16, 45))
    assert len(got["c/a.csv"]) == 2


@pytest.mark.parametrize("bounds", [(-3, 2), (18, 25), (30, 40)])
def test_windows_outside_the_file_are_rejected(bounds: tuple[int, int]) -> None:
    with pytest.raises(ConfigError) as err:
        nab.score_file(stamps(N), np.zeros(N), [window(*bounds)], 0.5, key="c/a.csv")
    assert "c/a.csv" in err.value.message and "outside" in err.value.message


def test_a_window_between_two_rows_is_rejected() -> None:
    w = [(T0 + timedelta(minutes=6), T0 + timedelta(minutes=8))]
    with pytest.raises(ConfigError, match="outside"):
        nab.score_file(stamps(N), np.zeros(N), w, 0.5)


def test_mismatched_lengths_and_unsorted_timestamps() -> None:
    with pytest.raises(UsageError, match="20 timestamps but 19"):
        nab.score_file(stamps(N), np.zeros(N - 1), W, 0.5)
    with pytest.raises(ConfigError, match="increasing"):
        nab.score_file(stamps(N)[::-1], np.zeros(N), [], 0.5)
    with pytest.raises(ConfigError, match="no labels for x.csv"):
        nab.score_corpus({"x.csv": (stamps(N), np.zeros(N))}, {}, "standard")
    with pytest.raises(UsageError, match="no files"):
        nab.score_corpus({}, {}, "standard")


def test_windows_may_come_in_any_order_but_not_overlap() -> None:
    w = [window(14, 15), window(5, 6)]
    # row 5 starts the first window (+1); row 14 starts the second (+1)
    assert nab.score_file(stamps(N), scores_at(N, {5: 1, 14: 1}), w, 0.5).score == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="overlap"):
        nab.score_file(stamps(N), np.zeros(N), [window(5, 9), window(9, 12)], 0.5)


def test_timestamps_may_be_strings() -> None:
    text = [t.strftime("%Y-%m-%d %H:%M:%S") for t in stamps(N)]
    assert nab.score_file(text, scores_at(N, {10: 1}), W, 0.5).score == pytest.approx(1.0)
