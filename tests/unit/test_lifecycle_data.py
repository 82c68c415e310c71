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
