"""Training data: reading CSV and Parquet, the fingerprint, and the checks against the spec."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlctl.core.errors import ConfigError
from mlctl.lifecycle import data
from mlctl.lifecycle.spec import TrainSpec


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.RandomState(0)
    return pd.DataFrame({"x1": rng.rand(n), "x2": rng.randint(0, 5, n), "city": ["a", "b"] * (n // 2),
                         "flag": [True, False] * (n // 2), "label": ["yes", "no"] * (n // 2),
                         "price": rng.rand(n) * 100})


def _spec(**kw: object) -> TrainSpec:
    base: dict[str, object] = {"data": "d.csv", "target": "label", "task": "classification"}
    return TrainSpec.model_validate(base | kw)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    return path


def test_resolve_data_path_is_relative_to_the_root(csv_file: Path) -> None:
    assert data.resolve_data_path(_spec(), csv_file.parent) == csv_file


def test_missing_file_and_unsupported_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data file .*nope.csv not found") as info:
        data.resolve_data_path(_spec(data="nope.csv"), tmp_path)
    assert "relative to the project root" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="unsupported file type '.xlsx'"):
        data.resolve_data_path(_spec(data="d.xlsx"), tmp_path)
    with pytest.raises(ConfigError, match=r"train\.data is not set"):
        data.resolve_data_path(TrainSpec(), tmp_path)


def test_columns_from_csv_header_and_parquet_schema(csv_file: Path) -> None:
    assert data.read_columns(csv_file) == ["x1", "x2", "city", "flag", "label", "price"]
    pq = csv_file.with_suffix(".parquet")
    _frame().to_parquet(pq)
    assert data.read_columns(pq) == data.read_columns(csv_file)
    empty = csv_file.with_name("empty.csv")
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        data.read_columns(empty)
    bad = csv_file.with_name("bad.parquet")
    bad.write_text("not parquet")
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        data.read_columns(bad)


def test_check_columns(csv_file: Path) -> None:
    cols = data.read_columns(csv_file)
    assert data.check_columns(cols, _spec(), csv_file) == ["x1", "x2", "city", "flag", "price"]
    assert data.check_columns(cols, _spec(features=["x1"]), csv_file) == ["x1"]
    with pytest.raises(ConfigError, match="column 'nope' not found in d.csv") as info:
        data.check_columns(cols, _spec(target="nope"), csv_file)
    assert "x1, x2, city" in (info.value.hint or "")
    with pytest.raises(ConfigError, match=r"column\(s\) ghost not found"):
        data.check_columns(cols, _spec(features=["x1", "ghost"]), csv_file)
    with pytest.raises(ConfigError, match="cannot also be a feature"):
        data.check_columns(cols, _spec(features=["x1", "label"]), csv_file)


def test_fingerprint_is_the_file_hash_rows_and_schema(csv_file: Path) -> None:
    df = data.load_table(csv_file)
    fp = data.fingerprint(csv_file, df, shown_path="d.csv")
    assert fp.sha256 == hashlib.sha256(csv_file.read_bytes()).hexdigest()
    assert (fp.rows, fp.columns, fp.format, fp.path) == (40, 6, "csv", "d.csv")
    assert fp.schema["x1"] == "float64" and fp.schema["x2"] == "int64" and fp.schema["flag"] == "bool"


def test_prepare_classification_and_regression(csv_file: Path) -> None:
    df = data.load_table(csv_file)
    prepared = data.prepare(df, _spec(), csv_file)
    assert prepared.classes == ["no", "yes"] and list(prepared.X.columns) == ["x1", "x2", "city", "flag", "price"]
    reg = data.prepare(df, _spec(target="price", task="regression", features=["x1", "x2"]), csv_file)
    assert reg.classes is None and str(reg.y.dtype) == "float64"
    whole_floats = df.assign(label=[1.0, 0.0] * 20)
    assert data.prepare(whole_floats, _spec(), csv_file).classes == [0, 1]


@pytest.mark.parametrize(("change", "spec_kw", "fragment"), [
    ({"label": np.linspace(0, 1, 120)}, {}, "is continuous (e.g. "),
    ({"label": np.arange(120) * 7}, {}, "has 120 distinct numbers in 120 rows: it looks continuous"),
    ({"label": ["yes"] * 120}, {}, "has a single class"),
    ({"label": ["yes", None] * 60}, {}, "has 60 missing value(s)"),
    ({}, {"target": "city", "task": "regression"}, "is not numeric"),
    ({"when": pd.date_range("2024-01-01", periods=120)}, {"features": ["x1", "when"]}, "unsupported column type"),
])
def test_prepare_rejects_bad_targets_and_features(csv_file: Path, change: dict, spec_kw: dict, fragment: str) -> None:
    df = _frame(120).assign(**change)
    with pytest.raises(ConfigError) as info:
        data.prepare(df, _spec(**spec_kw), csv_file)
    assert fragment in info.value.message
    assert info.value.exit_code == 2


def test_continuous_target_hint_names_the_fix(csv_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        data.prepare(_frame().assign(label=np.linspace(0, 1, 40)), _spec(), csv_file)
    assert info.value.hint == "set train.task: regression, or use a column of class labels"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _rows(n: int = 12, **cells: str) -> str:
    """A CSV text: header x1,x2,city,label and n rows; ``cells`` sets "column@row" (0-based) to a raw value."""
    lines = ["x1,x2,city,label"]
    for i in range(n):
        row = {"x1": f"{i / n:.3f}", "x2": str(i % 4), "city": "ab"[i % 2], "label": "yn"[i % 2]}
        for key, value in cells.items():
            col, at = key.split("_at_")
            if int(at) == i:
                row[col] = value
        lines.append(",".join(row.values()))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "spec_kw", "message"), [
    (_rows(x1_at_6="inf"), {}, "train.data: column 'x1' has an infinite value (inf) on line 8 of train.csv"),
    (_rows(x2_at_0="-inf"), {}, "train.data: column 'x2' has an infinite value (-inf) on line 2 of train.csv"),
    (_rows(x1_at_3="1e999"), {}, "train.data: column 'x1' has an infinite value (inf) on line 5 of train.csv"),
    (_rows(x1_at_3="Infinity"), {}, "train.data: column 'x1' has an infinite value (inf) on line 5 of train.csv"),
    (_rows(x2_at_4="abc"), {}, "train.data: column 'x2' holds numbers, but 'abc' on line 6 of train.csv is not a "
                               "number"),
    (_rows(30, x2_at_4="?", x2_at_9="n.a."), {}, "train.data: column 'x2' holds numbers, but '?' on line 6 of "
                                             "train.csv is not a number (2 such cells)"),
    ("x1,x2,city,label\n" + "".join(f"{i},,a,{'yn'[i % 2]}\n" for i in range(6)), {},
     "train.features: column 'x2' of train.csv is empty (no value on any row)"),
    ("x1,x2,city,label\n" + "".join(f"{i},1,,{'yn'[i % 2]}\n" for i in range(6)), {},
     "train.features: column 'city' of train.csv is empty (no value on any row)"),
    (_rows(x1_at_2="inf"), {"target": "x1", "task": "regression", "features": ["x2"]},
     "train.target: column 'x1' has an infinite value (inf) on line 4 of train.csv"),
    (_rows(x1_at_2="-inf"), {"target": "x1", "features": ["x2"]},
     "train.target: column 'x1' has an infinite value (-inf) on line 4 of train.csv"),
    ("x1,x2,city,label\n", {}, "train.data: train.csv has no rows"),
    (_rows().replace(",label", ",lbl"), {}, "train.target: column 'label' not found in train.csv"),
])
def test_bad_values_name_the_column_and_the_line(tmp_path: Path, text: str, spec_kw: dict, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        data.prepare(data.load_table(path), _spec(data="train.csv", **spec_kw), path)
    assert info.value.message == message
    assert info.value.exit_code == 2


def test_an_empty_csv_is_a_config_error(tmp_path: Path) -> None:
    for text in ("", "\n\n"):
        path = _csv(tmp_path, text)
        with pytest.raises(ConfigError, match="is empty .no header row.") as info:
            data.read_columns(path)
        assert info.value.exit_code == 2
        with pytest.raises(ConfigError, match="cannot read"):
            data.load_table(path)


def test_line_numbers_count_blank_lines_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'x1,x2,city,label\n0.1,1,"two\nlines",y\n\n0.2,inf,a,n\n0.3,2,b,y\n')
    with pytest.raises(ConfigError, match="column 'x2' has an infinite value .inf. on line 5 of train.csv"):
        data.prepare(data.load_table(path), _spec(data="train.csv"), path)
    assert data.row_location(path, 2) == "line 6"
    assert data.row_location(path, 99) == "row 100"  # past the end: the row number
    pq = tmp_path / "t.parquet"
    data.load_table(_csv(tmp_path, _rows(x1_at_4="inf"))).to_parquet(pq)
    with pytest.raises(ConfigError, match="column 'x1' has an infinite value .inf. on row 5 of t.parquet"):
        data.prepare(data.load_table(pq), _spec(data="t.parquet"), pq)


def test_text_columns_gaps_and_mostly_text_columns_are_fine(tmp_path: Path) -> None:
    """Missing numbers are imputed later, and a column of words with some numbers in it is text."""
    text = _rows(x1_at_2="", x2_at_5="")
    text = text.replace(",a,", ",12,").replace(",b,", ",street,")  # half numbers, half words: text
    path = _csv(tmp_path, text)
    prepared = data.prepare(data.load_table(path), _spec(data="train.csv"), path)
    assert list(prepared.X.columns) == ["x1", "x2", "city"]
