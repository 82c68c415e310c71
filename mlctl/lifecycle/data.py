"""Training data: read a CSV or Parquet file, fingerprint it, and check it against the spec.

Every problem with the data is a :class:`~mlctl.core.errors.ConfigError` (exit 2) naming the
file, the column and the fix: a missing file, a missing target or feature column, a target that
does not fit the task (a continuous target for classification, text for regression), missing
target values, unsupported feature types, an empty feature column, an infinite number, or a
stray word in a column of numbers. Problems with one cell name its line in the file (its row in
a Parquet file).

The fingerprint (:class:`DatasetFingerprint`) is logged with every run: the SHA-256 of the file's
bytes (so ``sha256sum`` reproduces it), the row count and the schema (column -> dtype).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.errors import ConfigError
from mlctl.lifecycle.spec import TrainSpec

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: a numeric classification target with more distinct values than this (and than half the rows)
#: looks continuous
MAX_CLASSES = 50
#: a text column whose non-empty cells are numbers but for at most this share is a column of
#: numbers with stray words in it (a typo, a placeholder such as "?"), not a text column
STRAY_TEXT_SHARE = 0.1


@dataclass(frozen=True)
class DatasetFingerprint:
    """What identifies the data a model was trained on."""

    path: str  # as given in the spec (relative to the project root)
    format: str  # "csv" or "parquet"
    sha256: str  # of the file's bytes
    rows: int
    columns: int
    schema: dict[str, str] = field(default_factory=dict)  # column -> dtype


@dataclass
class PreparedData:
    """Features and target ready for scikit-learn."""

    X: Any  # noqa: N815 - pandas.DataFrame of the features, in spec order
    y: Any  # pandas.Series
    features: list[str]
    task: str
    classes: list[Any] | None  # sorted labels (classification)


def data_format(path: Path) -> str:
    """``csv`` or ``parquet`` from the file suffix; ConfigError for anything else."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"train.data: {path.name}: unsupported file type '{path.suffix}'",
                          hint="use a .csv or .parquet file")
    return fmt


def resolve_data_path(spec: TrainSpec, root: Path) -> Path:
    """The data file of the spec, made absolute against the project root; it must exist."""
    raw = spec.require("data")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else (root / path)
    data_format(path)
    if not path.is_file():
        raise ConfigError(f"train.data: data file {path} not found",
                          hint="check train.data in mlctl.yaml (paths are relative to the project root)")
    return path


def read_columns(path: Path) -> list[str]:
    """The column names, read from the header (CSV) or the schema (Parquet) without loading rows."""
    if data_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise ConfigError(f"train.data: {path} is not a readable Parquet file: {exc}") from exc
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(64 * 1024)
            fh.seek(0)
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            header = next(csv.reader(fh, delimiter=delimiter), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"train.data: cannot read {path}: {exc}") from exc
    if not header or not sample.strip():
        raise ConfigError(f"train.data: {path} is empty (no header row)")
    return header


def check_columns(columns: list[str], spec: TrainSpec, path: Path) -> list[str]:
    """The feature list, after checking that the target and every feature exist in ``columns``."""
    target = spec.require("target")
    shown = ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else "")
    if target not in columns:
        raise ConfigError(f"train.target: column '{target}' not found in {path.name}",
                          hint=f"columns: {shown}")
    features = list(spec.features) if spec.features else [c for c in columns if c != target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise ConfigError(f"train.features: column(s) {', '.join(missing)} not found in {path.name}",
                          hint=f"columns: {shown}")
    if target in features:
        raise ConfigError(f"train.features: the target '{target}' cannot also be a feature")
    if not features:
        raise ConfigError(f"train.features: {path.name} has no columns besides the target '{target}'")
    return features


#: a target with at most this many distinct whole-number values is taken as class labels
MAX_INFERRED_CLASSES = 20


def infer_task(path: Path, target: str) -> tuple[str, str]:
    """``("classification" | "regression", why)`` for an unset ``train.task``, from the target column.

    Text, booleans and whole numbers with few distinct values (at most
    :data:`MAX_INFERRED_CLASSES`) are class labels; any other number is a regression target.
    Reads the target column only.
    """
    import pandas as pd

    try:
        if data_format(path) == "parquet":
            y = pd.read_parquet(path, columns=[target])[target]
        else:
            y = pd.read_csv(path, usecols=[target], sep="\t" if path.suffix.lower() == ".tsv" else ",")[target]
    except (ValueError, KeyError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(f"train.data: cannot read column '{target}' of {path}: {exc}") from exc
    values = y.dropna()
    if values.empty:
        raise ConfigError(f"train.target: column '{target}' has no values",
                          hint="choose another train.target, or fill the column")
    distinct = int(values.nunique())
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification", f"'{target}' holds labels ({distinct} distinct)"
    whole = bool(((values % 1) == 0).all())
    if whole and distinct <= MAX_INFERRED_CLASSES:
        return "classification", f"'{target}' has {distinct} distinct whole-number values"
    kind = "whole numbers" if whole else "numbers"
    return "regression", f"'{target}' holds {kind} with {distinct} distinct values"


def load_table(path: Path) -> Any:
    """The file as a pandas DataFrame."""
    import pandas as pd

    try:
        if data_format(path) == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(f"train.data: cannot read {path}: {exc}") from exc


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: Path, df: Any, shown_path: str | None = None) -> DatasetFingerprint:
    """The fingerprint of a loaded data file."""
    return DatasetFingerprint(
        path=shown_path or str(path),
        format=data_format(path),
        sha256=file_sha256(path),
        rows=int(len(df)),
        columns=int(df.shape[1]),
        schema={str(c): str(t) for c, t in df.dtypes.items()},
    )


def _kind(series: Any) -> str:
    """``bool``, ``int``, ``float``, ``string`` or ``other`` for a pandas column."""
    import pandas as pd
    from pandas.api import types as pt

    if pt.is_bool_dtype(series):
        return "bool"
    if pt.is_integer_dtype(series):
        return "int"
    if pt.is_float_dtype(series):
        return "float"
    if pt.is_string_dtype(series) or pt.is_object_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
        return "string"
    return "other"


def row_location(path: Path, index: int) -> str:
    """Where the ``index``-th data row (0-based, as loaded) is: ``line N`` of a CSV file (blank
    lines skipped, as pandas does; quoted line breaks counted), ``row N`` of a Parquet file."""
    if data_format(path) == "csv":
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
                row, end = -1, 0  # the header is row -1
                for record in reader:
                    start, end = end + 1, reader.line_num
                    if not record:
                        continue
                    if row == index:
                        return f"line {start}"
                    row += 1
        except (OSError, UnicodeDecodeError, csv.Error):
            pass
    return f"row {index + 1}"


def _first(mask: Any) -> int:
    import numpy as np

    return int(np.flatnonzero(np.asarray(mask))[0])


def _check_infinite(values: Any, column: str, path: Path, what: str) -> None:
    """ConfigError for the first infinite number in a numeric column."""
    import numpy as np

    numbers = np.asarray(values, dtype="float64")
    infinite = np.isinf(numbers)
    if infinite.any():
        i = _first(infinite)
        raise ConfigError(
            f"{what}: column '{column}' has an infinite value ({'-inf' if numbers[i] < 0 else 'inf'}) "
            f"on {row_location(path, i)} of {path.name}",
            hint="replace it with a finite number (numbers beyond ±1.8e308 read as infinite), or "
                 + ("drop that row" if what == "train.target" else "leave the cell empty for a missing value"))


def _check_features(X: Any, path: Path) -> None:  # noqa: N803
    """Each feature column holds something, and numbers are finite and not mixed with stray words."""
    import pandas as pd

    for name in X.columns:
        col = X[name]
        present = col.notna().to_numpy()
        if not present.any():
            raise ConfigError(f"train.features: column '{name}' of {path.name} is empty (no value on any row)",
                              hint="fill it in, or leave it out of train.features")
        kind = _kind(col)
        if kind in ("int", "float"):
            _check_infinite(col.to_numpy(dtype="float64", na_value=float("nan")), str(name), path, "train.data")
        elif kind == "string":
            numbers = pd.to_numeric(col.astype("object"), errors="coerce").to_numpy(dtype="float64")
            numeric = present & ~pd.isna(numbers)
            stray = present & pd.isna(numbers)
            if numeric.any() and 0 < stray.sum() <= STRAY_TEXT_SHARE * present.sum():
                i = _first(stray)
                raise ConfigError(
                    f"train.data: column '{name}' holds numbers, but '{col.iloc[i]}' on "
                    f"{row_location(path, i)} of {path.name} is not a number"
                    + (f" ({int(stray.sum())} such cells)" if stray.sum() > 1 else ""),
                    hint="correct it, or leave the cell empty for a missing value")


def prepare(df: Any, spec: TrainSpec, path: Path) -> PreparedData:
    """Select features and target, checking them against the task."""
    import numpy as np

    task = spec.require("task")
    target = spec.require("target")
    features = check_columns([str(c) for c in df.columns], spec, path)
    if len(df) == 0:
        raise ConfigError(f"train.data: {path.name} has no rows")
    y = df[target]
    n_missing = int(y.isna().sum())
    if n_missing:
        raise ConfigError(f"train.target: column '{target}' has {n_missing} missing value(s) in {path.name}",
                          hint="drop or fill those rows first")
    kind = _kind(y)
    classes: list[Any] | None = None
    if kind in ("int", "float"):
        _check_infinite(y.to_numpy(dtype="float64"), target, path, "train.target")
    if task == "classification":
        if kind == "float":
            values = y.to_numpy(dtype=float)
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                example = next(v for v in values if v != round(v)) if np.all(np.isfinite(values)) else "inf"
                raise ConfigError(
                    f"train.target: column '{target}' is continuous (e.g. {example}) but train.task is "
                    "classification", hint="set train.task: regression, or use a column of class labels")
            y = y.astype("int64")
            kind = "int"
        n_classes = int(y.nunique())
        if kind == "int" and n_classes > MAX_CLASSES and n_classes > len(y) / 2:
            raise ConfigError(
                f"train.target: column '{target}' has {n_classes} distinct numbers in {len(y)} rows: it looks "
                "continuous, but train.task is classification",
                hint="set train.task: regression, or use a column of class labels")
        if kind == "other":
            raise ConfigError(f"train.target: column '{target}' has unsupported type {y.dtype} for classification")
        if n_classes < 2:
            raise ConfigError(f"train.target: column '{target}' has a single class; classification needs two or more")
        classes = sorted(y.unique().tolist())
    else:
        if kind not in ("int", "float"):
            raise ConfigError(
                f"train.target: column '{target}' is not numeric ({y.dtype}) but train.task is regression",
                hint="set train.task: classification, or use a numeric column")
        y = y.astype("float64")
    X = df[features]  # noqa: N806
    bad = [c for c in features if _kind(X[c]) == "other"]
    if bad:
        raise ConfigError(
            f"train.features: unsupported column type(s): {', '.join(f'{c} ({X[c].dtype})' for c in bad)}",
            hint="use numeric, boolean or text columns (convert dates to numbers first), or leave them out")
    _check_features(X, path)
    return PreparedData(X=X, y=y, features=features, task=task, classes=classes)
