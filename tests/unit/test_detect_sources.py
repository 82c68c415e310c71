"""Metric sources: every bad input gets a clear error or a warning, and no row is lost."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mlctl.core.durations import format_duration, parse_duration
from mlctl.core.errors import EXIT_USAGE, NotFound, UsageError, exit_code_for
from mlctl.detect.sources import parse_timestamp, read_input, read_jsonl


def _write(tmp_path: Path, text: str, name: str = "m.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_long_csv_keeps_timestamps_verbatim(tmp_path: Path) -> None:
    f = read_input(_write(tmp_path, "timestamp,value\n2024-05-01 00:00:00,1.5\n2024-05-01 00:05:00,2\n"))
    assert f.names == ["value"] and f.univariate
    assert f.labels == ["2024-05-01 00:00:00", "2024-05-01 00:05:00"]
    assert f.values[:, 0].tolist() == [1.5, 2.0]
    assert f.times[1] - f.times[0] == 300 and not f.warnings


def test_wide_csv_and_epoch_timestamps(tmp_path: Path) -> None:
    f = read_input(_write(tmp_path, "cpu,ts,mem\n1,1714521600,10\n2,1714521660000,11\n"))
    assert f.names == ["cpu", "mem"] and not f.univariate
    assert f.times.tolist() == [1714521600.0, 1714521660.0]  # seconds and milliseconds both understood
    assert f.values.tolist() == [[1.0, 10.0], [2.0, 11.0]]


def test_unsorted_rows_are_scored_in_time_order(tmp_path: Path) -> None:
    f = read_input(_write(tmp_path, "timestamp,value\n2024-01-01T00:02:00Z,3\n2024-01-01T00:00:00Z,1\n"
                                    "2024-01-01T00:01:00Z,2\n"))  # fmt: skip
    assert f.values[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert f.labels[0] == "2024-01-01T00:00:00Z"
    assert any("out of time order" in w for w in f.warnings)


def test_duplicate_timestamps_are_kept(tmp_path: Path) -> None:
    f = read_input(_write(tmp_path, "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:00Z,2\n"
                                    "2024-01-01T00:01:00Z,3\n"))  # fmt: skip
    assert len(f) == 3 and f.values[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert any("1 duplicate timestamp" in w for w in f.warnings)


def test_missing_timestamp_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        read_input(_write(tmp_path, "timestamp,value\n2024-01-01T00:00:00Z,1\n,2\nyesterday,3\n"))
    assert "line 3, 4" in err.value.message and "timestamp" in err.value.message
    assert exit_code_for(err.value) == EXIT_USAGE


def test_nan_inf_and_empty_cells_are_kept_and_reported(tmp_path: Path) -> None:
    f = read_input(_write(tmp_path, "timestamp,value\n1,1\n2,NaN\n3,inf\n4,\n5,-Infinity\n6,2\n"))
    assert len(f) == 6
    vals = f.values[:, 0]
    assert math.isnan(vals[1]) and vals[2] == math.inf and math.isnan(vals[3]) and vals[4] == -math.inf
    assert any("4 missing, NaN or infinite" in w for w in f.warnings)


def test_gaps_are_reported_not_filled(tmp_path: Path) -> None:
    rows = "".join(f"{t},{t % 7}\n" for t in [*range(0, 600, 60), 3600, 3660])
    f = read_input(_write(tmp_path, "timestamp,value\n" + rows))
    assert len(f) == 12
    assert any("1 gap(s)" in w and "largest 51m" in w for w in f.warnings)


def test_constant_series_is_a_warning(tmp_path: Path) -> None:
    f = read_input(_write(tmp_path, "timestamp,value\n1,5\n2,5\n3,5\n"))
    assert any("constant" in w for w in f.warnings)


def test_non_numeric_value_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        read_input(_write(tmp_path, "timestamp,cpu,mem\n1,1,2\n2,high,3\n3,4,oops\n"))
    msg = err.value.message
    assert "line 3, column 'cpu'" in msg and "'high' is not a number" in msg and "2 cells in all" in msg


@pytest.mark.parametrize(("text", "expected"), [
    ("", "the file is empty"),
    ("   \n\n", "the file is empty"),
    ("timestamp,value\n", "has a header but no data rows"),
    ("timestamp\n1\n", "no value column: the only column, 'timestamp', holds timestamps"),
    ("timestamp,value\n1e300,1\n", "unreadable timestamp on line 2"),  # beyond the year 9999
    ("timestamp,value\n-1e15,1\n", "unreadable timestamp on line 2"),  # before the year 1
    ("timestamp,value\n1,2,3\n", "wrong number of fields"),
    ("t,a,a\n1,2,3\n", "duplicate column names"),
])  # fmt: skip
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(UsageError) as err:
        read_input(_write(tmp_path, text))
    assert expected in err.value.message


def test_missing_file_folder_and_binary(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_input(str(tmp_path / "nope.csv"))
    with pytest.raises(UsageError, match="is a folder"):
        read_input(str(tmp_path))
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_input(str(tmp_path / "b.csv"))


def test_jsonl_from_stdin_and_file(tmp_path: Path) -> None:
    lines = [{"timestamp": "2024-01-01T00:00:00Z", "cpu": 1, "mem": 2}, {"timestamp": "2024-01-01T00:01:00Z",
                                                                         "cpu": 3, "mem": None}]  # fmt: skip
    text = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    f = read_input("-", stdin=io.StringIO(text))
    assert f.names == ["cpu", "mem"] and f.source == "stdin" and math.isnan(f.values[1, 1])
    g = read_input(_write(tmp_path, text, "m.jsonl"))
    assert np.array_equal(f.times, g.times)
    csv_on_stdin = read_input("-", stdin=io.StringIO("timestamp,value\n1,2\n"))
    assert csv_on_stdin.values.tolist() == [[2.0]]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"timestamp": 1, "value": 2}\nnot json\n', "line 2 is not JSON"),
    ('[1, 2]\n', "line 1 is not a JSON object"),
    ('{"timestamp": 1, "value": 2}\n{"timestamp": 2, "other": 3}\n', "line 2 has keys"),
    ("", "no input"),
])  # fmt: skip
def test_bad_jsonl(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as err:
        read_jsonl(io.StringIO(text))
    assert expected in err.value.message


def test_empty_stdin() -> None:
    with pytest.raises(UsageError, match="no input"):
        read_input("-", stdin=io.StringIO("  \n"))


def test_parquet(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3, freq="min"), "v": [1.0, 2.0, 3.0]})
    df.to_parquet(tmp_path / "m.parquet")
    f = read_input(str(tmp_path / "m.parquet"))
    assert f.values[:, 0].tolist() == [1.0, 2.0, 3.0] and f.labels[0] == "2024-01-01T00:00:00Z"
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="not readable as Parquet"):
        read_input(str(tmp_path / "bad.parquet"))


def test_parse_timestamp_forms() -> None:
    assert parse_timestamp("2024-01-01T00:00:00Z") == parse_timestamp("2024-01-01 00:00:00") == 1704067200.0
    assert parse_timestamp("2024-01-01T01:00:00+01:00") == 1704067200.0
    assert parse_timestamp(1704067200000) == 1704067200.0
    assert parse_timestamp("nan") is None and parse_timestamp("") is None and parse_timestamp(None) is None


def test_durations() -> None:
    assert parse_duration("15s") == 15 and parse_duration("2d") == 172800 and parse_duration(30) == 30
    assert format_duration(0.25) == "250ms" and format_duration(90061) == "1d1h1m1s"
    for bad in ("", "5x", "-1s", "0", "1h 5m", True):
        with pytest.raises(UsageError):
            parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "name"), [
    ("value\n1\n2.5\n\n7\n", "m.csv"),
    ('{"value": 1}\n{"value": 2.5}\n{"value": 7}\n', "m.jsonl"),
])  # fmt: skip
def test_a_single_value_column_is_a_series_in_file_order(tmp_path: Path, text: str, name: str) -> None:
    f = read_input(_write(tmp_path, text, name))
    assert f.indexed and f.names == ["value"]
    assert f.values[:, 0].tolist() == [1.0, 2.5, 7.0]
    assert f.times.tolist() == [0.0, 1.0, 2.0] and f.labels == ["0", "1", "2"]
    assert f.warnings == ["no timestamp column: the 3 point(s) are numbered 0, 1, 2... in file order"]
    with pytest.raises(UsageError, match=r"line 3, column 'value': 'high' is not a number"):
        read_input(_write(tmp_path, "value\n1\nhigh\n"))
    assert not read_input(_write(tmp_path, "timestamp,value\n1,2\n")).indexed


def test_values_near_the_float_limit_warn_nothing(tmp_path: Path) -> None:
    import warnings

    rows = "".join(f"{60 * i},{v!r}\n" for i, v in enumerate([1.7e308, -1.7e308, 1e308, 1.7976931348623157e308]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max - min of the column overflows: no numpy warning may leak
        f = read_input(_write(tmp_path, "timestamp,value\n" + rows))
        g = read_input(_write(tmp_path, "timestamp,value\n0,1.7e308\n60,1.7e308\n"))
    assert np.isfinite(f.values).all() and not f.warnings
    assert g.warnings == ["'value' is constant: nothing can stand out"]


def test_huge_numeric_timestamps_in_json_lines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unreadable timestamp on line 1, 2"):
        read_input(_write(tmp_path, '{"timestamp": 1e300, "value": 1}\n{"timestamp": 2e300, "value": 2}\n', "t.jsonl"))
    assert parse_timestamp(253402300799000) == 253402300799.0  # the last second of 9999, in milliseconds
    assert parse_timestamp(253402300800000) is None and parse_timestamp(1e300) is None
