"""leave_one_group_out(): choices made without the scored group, and one honest aggregate.

The corpus: three categories of one 100-row file each (hourly rows; probation 15 rows). ``catA/a.csv``
and ``catB/b.csv`` have one labelled window, rows 50..59 (width 10); ``catC/c.csv`` has none.

* a.csv scores 0.9 at row 50 (the window's first row: worth a full A_TP) and 0.5 at row 80 (a false
  positive 21 rows after the window: it costs A_FP * S(21 / 9), almost a full A_FP);
* b.csv scores 0.5 at row 50 and 0.9 at row 20 (a false positive before any window: a full A_FP);
* c.csv scores 0.7 at row 30 (a false positive in a file without windows).

Standard profile, raw totals per candidate threshold (A_FP = 0.11, a miss costs 1):
* held-out A, chosen on B + C: 0.9 -> -1.11, 0.7 -> -1.22, 0.5 -> 0.78, nothing -> -1: 0.5;
* held-out B, chosen on A + C: 0.9 -> 1.0, 0.7 -> 0.89, 0.5 -> ~0.78, nothing -> -1: 0.9;
* held-out C, chosen on A + B: 0.9 -> -0.11, 0.5 -> ~1.78: 0.5.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlctl.core.errors import UsageError
from mlctl.detect.base import make_detector
from mlctl.detect.evaluate import category, corpus_scores, leave_one_group_out
from mlctl.detect.nab import PROFILES, Window, prepare_corpus, scaled_sigmoid, score_corpus

T0 = datetime(2015, 3, 1)
ROWS = 100
STAMPS = [(T0 + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(ROWS)]
WINDOW: list[Window] = [(T0 + timedelta(hours=50), T0 + timedelta(hours=59))]
WINDOWS: dict[str, list[Window]] = {"catA/a.csv": WINDOW, "catB/b.csv": WINDOW, "catC/c.csv": []}
FP = 0.11
LATE_FP = FP * float(-scaled_sigmoid((80 - 59) / 9))  # a.csv's false positive, just under a full A_FP


def scores(**marks: float) -> np.ndarray:
    out = np.zeros(ROWS)
    for row, value in marks.items():
        out[int(row[1:])] = value
    return out


def corpus(b_false_positive: bool = True) -> dict[str, tuple[list[str], np.ndarray]]:
    b = scores(r50=0.5, r20=0.9) if b_false_positive else scores(r50=0.5)
    return {
        "catA/a.csv": (STAMPS, scores(r50=0.9, r80=0.5)),
        "catB/b.csv": (STAMPS, b),
        "catC/c.csv": (STAMPS, scores(r30=0.7)),
    }


def test_each_group_is_scored_at_the_threshold_chosen_on_the_others() -> None:
    result = leave_one_group_out({"det": corpus()}, WINDOWS)
    folds = {g.group: g for g in result.groups}
    assert list(folds) == ["catA", "catB", "catC"]
    assert [folds[g].threshold for g in folds] == [0.5, 0.9, 0.5]
    assert all(g.candidate == "det" and g.files == 1 for g in result.groups)
    # A at 0.5: its window from the first row, and the late false positive
    assert folds["catA"].raw == pytest.approx(1.0 - LATE_FP)
    assert (folds["catA"].detected_windows, folds["catA"].fp) == (1, 1)
    # B at 0.9 (chosen without B): the early false positive, and the window missed
    assert folds["catB"].raw == pytest.approx(-FP - 1.0)
    assert (folds["catB"].detected_windows, folds["catB"].fp) == (0, 1)
    assert folds["catB"].score == pytest.approx(100 * (-FP - 1.0 + 1.0) / 2)
    # B at its own best threshold (0.5) would have found its window: the in-sample reference
    assert folds["catB"].own_score == pytest.approx(100 * (1.0 - FP + 1.0) / 2)
    # C has no windows: no score of its own, but its false positive counts in the total
    assert folds["catC"].score is None and folds["catC"].raw == pytest.approx(-FP)
    # the aggregate: every file's held-out raw score, normalised over the whole corpus
    raw = (1.0 - LATE_FP) + (-FP - 1.0) + (-FP)
    assert result.raw == pytest.approx(raw)
    assert (result.null, result.perfect) == (-2.0, 2.0)
    assert result.score == pytest.approx(100 * (raw + 2.0) / 4.0)
    assert (result.files, result.windows, result.detected_windows, result.fp) == (3, 2, 1, 3)


def test_the_held_out_score_is_below_the_in_sample_one_here() -> None:
    inside = score_corpus(corpus(), WINDOWS)
    assert inside.threshold == 0.5
    assert inside.score == pytest.approx(100 * (2.0 - 2 * FP - LATE_FP + 2.0) / 4.0)
    held = leave_one_group_out({"det": prepare_corpus(corpus(), WINDOWS)})  # a prepared corpus works too
    assert held.score is not None and inside.score is not None and held.score < inside.score


def test_candidates_are_chosen_per_fold_on_the_other_groups() -> None:
    # "alt" lacks b.csv's false positive: it is better wherever b.csv is in the training groups,
    # and identical on A + C, where the tie goes to the first candidate
    result = leave_one_group_out({"base": corpus(), "alt": corpus(b_false_positive=False)}, WINDOWS)
    folds = {g.group: g for g in result.groups}
    assert {g: f.candidate for g, f in folds.items()} == {"catA": "alt", "catB": "base", "catC": "alt"}
    # B is then scored with base's scores at base's threshold, never with the candidate that suits B
    assert folds["catB"].threshold == 0.9 and folds["catB"].raw == pytest.approx(-FP - 1.0)
    swapped = leave_one_group_out({"alt": corpus(b_false_positive=False), "base": corpus()}, WINDOWS)
    assert {g.group: g.candidate for g in swapped.groups}["catB"] == "alt"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_and_a_custom_grouping(profile: str) -> None:
    result = leave_one_group_out({"det": corpus()}, WINDOWS, profile=profile)
    assert result.profile == profile
    a_fn = PROFILES[profile].a_fn
    assert result.null == -2 * a_fn
    # one group per file by name: the same folds here, since each category holds one file
    by_file = leave_one_group_out({"det": corpus()}, WINDOWS, profile=profile, group=lambda k: k.rsplit("/", 1)[1])
    assert by_file.raw == pytest.approx(result.raw)


def test_bad_input() -> None:
    with pytest.raises(UsageError, match="no candidate"):
        leave_one_group_out({}, WINDOWS)
    with pytest.raises(UsageError, match="at least two groups"):
        leave_one_group_out({"det": corpus()}, WINDOWS, group=lambda k: "all")
    partial = {k: v for k, v in corpus().items() if k != "catC/c.csv"}
    with pytest.raises(UsageError, match="same files"):
        leave_one_group_out({"det": corpus(), "short": partial}, WINDOWS)


def test_category() -> None:
    assert category("realTweets/Twitter_volume_FB.csv") == "realTweets"
    assert category("a/b/c.csv") == "a"
    assert category("bare.csv") == ""


def test_corpus_scores_runs_a_fresh_detector_per_labelled_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = {key: 10 + rng.normal(0, 1, ROWS) for key in WINDOWS}
    for key, v in values.items():
        path = tmp_path / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("timestamp,value\n" + "".join(f"{t},{x!r}\n" for t, x in zip(STAMPS, v.tolist(), strict=True)))
    (tmp_path / "data" / "catC" / "unlabelled.csv").write_text("timestamp,value\n" + f"{STAMPS[0]},1.0\n")
    labels = tmp_path / "windows.json"
    window = [STAMPS[50], STAMPS[59]]
    labels.write_text(json.dumps({"catA/a.csv": [window], "catB/b.csv": [window], "catC/c.csv": []}))
    found, seconds = corpus_scores(tmp_path / "data", labels, detector="zscore", jobs=2)
    assert sorted(found) == sorted(WINDOWS) and seconds >= 0
    for key, (ts, s) in found.items():
        assert ts == STAMPS
        np.testing.assert_array_equal(s, make_detector("zscore").score(values[key]))
    result = leave_one_group_out({"zscore": found}, WINDOWS)
    assert result.files == 3 and len(result.groups) == 3
