"""evaluate() and score_results() on a tiny NAB-layout corpus written to tmp_path.

The corpus: ``catA/a.csv`` (40 rows, a step from 0 to 10 at row 20, labelled window rows 18..23),
``catB/b.csv`` (40 rows cycling 0, 1, 2, no windows), ``catB/extra.csv`` (no labels) and a label
for ``catC/gone.csv`` (no data). The test detector scores |x - previous x| / scale, capped at 1.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlctl.core.errors import ConfigError, NotFound, OperationFailed, UsageError, exit_code_for
from mlctl.core.params import Param
from mlctl.detect.base import Detector, register
from mlctl.detect.evaluate import evaluate, read_series, results_path, score_results
from mlctl.detect.nab import NO_DETECTION_THRESHOLD, PROFILES

T0 = datetime(2015, 3, 1)


@register
class JumpDetector(Detector):
    """Test-only: how far a value moved from the previous one, in units of ``scale``."""

    name = "test_jump"
    params = {
        "scale": Param(float, 5.0, "the move that scores 1", low=1e-9),
        "nan_first": Param(bool, False, "score the first row NaN (it has no previous value)"),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._prev: float | None = None

    def learn_one(self, x: Any) -> None:
        self._prev = float(x)

    def score_one(self, x: Any) -> float:
        if self._prev is None:
            return math.nan if self.nan_first else 0.0
        return min(1.0, abs(float(x) - self._prev) / self.scale)


@register
class ShortDetector(JumpDetector):
    """Test-only: drops the last score, as a broken detector might."""

    name = "test_short"

    def score(self, values: np.ndarray) -> np.ndarray:
        return super().score(values)[:-1]


def stamp(i: int) -> str:
    return (T0 + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")


def write_csv(path: Path, values: list[float], header: str = "timestamp,value") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] + [f"{stamp(i)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    write_csv(data / "catA" / "a.csv", [0.0] * 20 + [10.0] * 20)
    write_csv(data / "catB" / "b.csv", [float(i % 3) for i in range(40)])
    write_csv(data / "catB" / "extra.csv", [1.0] * 10)
    labels = tmp_path / "windows.json"
    labels.write_text(
        json.dumps(
            {
                "catA/a.csv": [[f"{stamp(18)}.000000", f"{stamp(23)}.000000"]],
                "catB/b.csv": [],
                "catC/gone.csv": [],
            }
        ),
        encoding="utf-8",
    )
    return data, labels


# The one detection that pays: row 20 of a.csv scores 1 (a move of 10 > scale 5). b.csv's moves score
# 0.2 or 0.4, so any lower threshold only adds false positives. At threshold 1.0, row 20 of the window
# 18..23 (width 6) is worth tanh(2.5 * 4 / 6) / tanh(2.5) = 0.95683 under every profile.
WORTH = math.tanh(2.5 * 4 / 6) / math.tanh(2.5)


def test_evaluate_scores_every_profile(corpus: tuple[Path, Path]) -> None:
    data, labels = corpus
    report = evaluate(data, labels, detector="test_jump")
    assert report.detector == "test_jump" and report.files == 2 and report.rows == 80
    assert report.skipped == ["catB/extra.csv"]
    assert report.missing == ["catC/gone.csv"]
    assert any("extra.csv" in w for w in report.warnings) and any("gone.csv" in w for w in report.warnings)
    assert list(report.profiles) == list(PROFILES)
    for result in report.profiles.values():
        assert result.threshold == 1.0
        assert result.raw == pytest.approx(WORTH)
        assert (result.tp, result.fp, result.windows, result.detected_windows) == (1, 0, 1, 1)
    # normalised: null = -A_FN, perfect = 1
    assert report.scores["standard"] == pytest.approx(100 * (WORTH + 1) / 2)
    assert report.scores["reward_low_FP_rate"] == pytest.approx(100 * (WORTH + 1) / 2)
    assert report.scores["reward_low_FN_rate"] == pytest.approx(100 * (WORTH + 2) / 3)
    files = {f.file: f for f in report.profiles["standard"].files}
    assert files["catA/a.csv"].score == pytest.approx(WORTH)
    assert files["catB/b.csv"].score == 0.0 and files["catB/b.csv"].normalized is None
    rows = report.table_rows()
    assert [r["file"] for r in rows] == ["catA/a.csv", "catB/b.csv", "raw total", "threshold", "NAB score"]
    assert rows[-1]["standard"] == report.scores["standard"]


def test_detector_parameters_reach_the_detector(corpus: tuple[Path, Path]) -> None:
    data, labels = corpus
    # scale 1: b.csv's moves of 1 and 2 now score 1 too, so 1.0 flags a's step and every move in b:
    # the optimum becomes "detect nothing"
    report = evaluate(data, labels, detector="test_jump", params={"scale": 1.0}, profiles=["standard"])
    assert report.params == {"scale": 1.0}
    assert report.profiles["standard"].threshold == NO_DETECTION_THRESHOLD
    assert report.scores["standard"] == 0.0


def test_results_are_written_in_nabs_layout_and_score_the_same(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    data, labels = corpus
    out = tmp_path / "results"
    report = evaluate(data, labels, detector="test_jump", results_dir=out)
    path = out / "test_jump" / "catA" / "test_jump_a.csv"
    assert results_path(out, "test_jump", "catA/a.csv") == path
    assert not (out / "test_jump" / "catB" / "test_jump_extra.csv").exists()  # unlabelled: not run
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score", "label"]
    assert [r[0] for r in rows[1:]] == [stamp(i) for i in range(40)]
    assert [float(r[2]) for r in rows[1:]] == [1.0 if i == 20 else 0.0 for i in range(40)]
    assert [int(r[3]) for r in rows[1:]] == [1 if 18 <= i <= 23 else 0 for i in range(40)]
    summary = out / "test_jump" / "test_jump_standard_scores.csv"
    with summary.open(newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [r["File"] for r in lines] == ["catA/a.csv", "catB/b.csv", ""]
    assert float(lines[-1]["Score"]) == pytest.approx(WORTH)

    again = score_results(out / "test_jump", labels)
    assert again.detector == "test_jump" and again.data_dir is None
    # the folder evaluate() wrote to works too, with or without the detector's name
    above = score_results(out, labels, profiles=["standard"])
    named = score_results(out, labels, detector="test_jump", profiles=["standard"])
    assert above.detector == named.detector == "test_jump"
    assert above.profiles["standard"].raw == named.profiles["standard"].raw == again.profiles["standard"].raw
    assert again.skipped == [] and again.missing == ["catC/gone.csv"]
    for name in PROFILES:
        assert again.profiles[name].threshold == report.profiles[name].threshold
        assert again.profiles[name].raw == pytest.approx(report.profiles[name].raw)
    # values are optional in a results file: NAB's scorer only reads timestamp and anomaly_score
    write_csv(
        tmp_path / "mine" / "catA" / "mine_a.csv", [0.0] * 20 + [1.0] + [0.0] * 19, header="timestamp,anomaly_score"
    )
    bare = score_results(tmp_path / "mine", labels, profiles=["standard"])
    assert bare.detector == "mine" and bare.profiles["standard"].raw == pytest.approx(WORTH)


def test_parallel_runs_give_the_same_scores(corpus: tuple[Path, Path]) -> None:
    data, labels = corpus
    seen: list[tuple[str, int, int]] = []
    serial = evaluate(data, labels, detector="test_jump", profiles=["standard"])
    parallel = evaluate(
        data,
        labels,
        detector="test_jump",
        profiles=["standard"],
        jobs=2,
        progress=lambda key, done, total: seen.append((key, done, total)),
    )
    assert parallel.profiles["standard"].raw == serial.profiles["standard"].raw
    assert seen == [("catA/a.csv", 1, 2), ("catB/b.csv", 2, 2)]


def test_nan_scores_are_reported(corpus: tuple[Path, Path]) -> None:
    data, labels = corpus
    report = evaluate(data, labels, detector="test_jump", params={"nan_first": True}, profiles=["standard"])
    assert sum("NaN" in w for w in report.warnings) == 2  # the first row of each file


def test_read_series(corpus: tuple[Path, Path]) -> None:
    data, _ = corpus
    ts, values = read_series(data / "catA" / "a.csv")
    assert ts[0] == "2015-03-01 00:00:00" and len(ts) == 40
    assert values[19:21].tolist() == [0.0, 10.0]


# --------------------------------------------------------------------------- bad input


def code(exc: pytest.ExceptionInfo[BaseException]) -> int:
    return exit_code_for(exc.value)


def test_missing_and_malformed_labels(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = corpus
    with pytest.raises(NotFound, match="labels file not found") as err:
        evaluate(data, tmp_path / "nope.json", detector="test_jump")
    assert code(err) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"catA/a.csv": [["2015-03-01 18:00:00",', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON") as err:
        evaluate(data, bad, detector="test_jump")
    assert code(err) == 2


def test_window_outside_the_file(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = corpus
    labels = tmp_path / "late.json"
    labels.write_text(json.dumps({"catA/a.csv": [["2030-01-01 00:00:00", "2030-01-02 00:00:00"]]}), encoding="utf-8")
    with pytest.raises(ConfigError, match="catA/a.csv: window .* outside") as err:
        evaluate(data, labels, detector="test_jump")
    assert code(err) == 2


def test_empty_missing_and_unlabelled_data(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    _, labels = corpus
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no CSV files") as err:
        evaluate(empty, labels, detector="test_jump")
    assert code(err) == 2
    with pytest.raises(NotFound, match="data folder not found"):
        evaluate(tmp_path / "absent", labels, detector="test_jump")
    other = tmp_path / "other"
    write_csv(other / "x" / "y.csv", [1.0, 2.0])
    with pytest.raises(UsageError, match="none of the 1 CSV files"):
        evaluate(other, labels, detector="test_jump")


def test_bad_data_files(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    data, labels = corpus
    write_csv(data / "catA" / "a.csv", [1.0, 2.0], header="time,val")
    with pytest.raises(ConfigError, match="no 'timestamp' column"):
        evaluate(data, labels, detector="test_jump")
    (data / "catA" / "a.csv").write_text("timestamp,value\n2015-03-01 00:00:00,abc\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a number"):
        evaluate(data, labels, detector="test_jump")
    (data / "catA" / "a.csv").write_text("timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 01:00:00\n")
    with pytest.raises(ConfigError, match="data row 2 has too few columns"):
        evaluate(data, labels, detector="test_jump")
    (data / "catA" / "a.csv").write_text("timestamp,value\n")
    with pytest.raises(ConfigError, match="has no rows"):
        evaluate(data, labels, detector="test_jump")


def test_blank_values_read_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("timestamp,value\n2015-03-01 00:00:00,1.5\n2015-03-01 01:00:00,\n", encoding="utf-8")
    _, values = read_series(path)
    assert values[0] == 1.5 and math.isnan(values[1])


def test_bad_detector_and_profile(corpus: tuple[Path, Path]) -> None:
    data, labels = corpus
    with pytest.raises(NotFound, match="no detector named 'nope'"):
        evaluate(data, labels, detector="nope")
    with pytest.raises(UsageError, match="no parameter 'width'"):
        evaluate(data, labels, detector="test_jump", params={"width": 3})
    with pytest.raises(UsageError, match="unknown NAB profile"):
        evaluate(data, labels, detector="test_jump", profiles=["lenient"])
    with pytest.raises(UsageError, match="jobs"):
        evaluate(data, labels, detector="test_jump", jobs=0)
    with pytest.raises(OperationFailed, match="returned 39 scores for 40 rows") as err:
        evaluate(data, labels, detector="test_short")
    assert code(err) == 1


def test_score_results_without_matching_files(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    _, labels = corpus
    write_csv(tmp_path / "res" / "det" / "catA" / "other_a.csv", [0.5] * 40, header="timestamp,anomaly_score")
    with pytest.raises(UsageError, match="det_<file>.csv"):
        score_results(tmp_path / "res" / "det", labels)
    assert score_results(tmp_path / "res" / "det", labels, detector="other").files == 1
    write_csv(tmp_path / "res" / "mine" / "catA" / "mine_a.csv", [0.5] * 40, header="timestamp,anomaly_score")
    write_csv(tmp_path / "res" / "yours" / "catA" / "yours_a.csv", [0.5] * 40, header="timestamp,anomaly_score")
    with pytest.raises(UsageError, match="several detectors: mine, yours"):
        score_results(tmp_path / "res", labels)
    assert score_results(tmp_path / "res", labels, detector="yours").detector == "yours"
    with pytest.raises(NotFound, match="results folder not found"):
        score_results(tmp_path / "absent", labels)
