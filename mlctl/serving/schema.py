"""Checking JSON records against a model's input signature, with field-level errors.

A signature's inputs are ``[{"name": str, "type": T}]`` with ``T`` one of ``double``,
``float``, ``long``, ``integer``, ``string``, ``boolean`` (MLflow's column types). A valid
request becomes one numpy 2-D array with the columns in signature order; an invalid one raises
:class:`RecordsInvalid` listing every problem (up to a cap) in FastAPI's 422 shape:
``{"loc": ["records", 3, "f7"], "msg": ..., "type": ...}``.

>>> schema = InputSchema.from_signature({"inputs": [{"name": "a", "type": "double"},
...                                                 {"name": "b", "type": "long"}]})
>>> schema.to_array([{"a": 1.5, "b": 2}]).tolist()
[[1.5, 2.0]]
>>> try:
...     schema.to_array([{"a": "x", "b": 2, "c": 1}])
... except RecordsInvalid as exc:
...     [(e["loc"], e["type"]) for e in exc.errors]
[(['records', 0, 'a'], 'float_type'), (['records', 0, 'c'], 'extra_forbidden')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

#: Column types of a signature and the JSON values each accepts.
NUMBER_TYPES = frozenset({"double", "float"})
INTEGER_TYPES = frozenset({"long", "integer"})
COLUMN_TYPES = NUMBER_TYPES | INTEGER_TYPES | {"string", "boolean"}
#: At most this many errors are listed for one request.
MAX_ERRORS = 50

_EXPECTED = {"double": "a number", "float": "a number", "long": "an integer", "integer": "an integer",
             "string": "a string", "boolean": "true or false"}
_ERROR_TYPE = {"double": "float_type", "float": "float_type", "long": "int_type", "integer": "int_type",
               "string": "string_type", "boolean": "bool_type"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class RecordsInvalid(ValueError):
    """The request's records do not match the signature; ``errors`` are FastAPI-style dicts."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


def error(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    """One entry of a 422 ``detail`` list."""
    return {"loc": list(loc), "msg": msg, "type": kind}


@dataclass(frozen=True)
class InputSchema:
    """The ordered input columns of a model and their types; ``max_abs``: the largest magnitude a
    number may have (a model that computes in float32, such as scikit-learn's trees, overflows past
    about 3.4e38: such a value is refused as invalid input, never predicted on or failed with 500)."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    max_abs: float | None = None

    @classmethod
    def from_signature(cls, signature: Mapping[str, Any]) -> InputSchema:
        """Read ``signature["inputs"]``; raise ValueError when it is missing or malformed."""
        inputs = signature.get("inputs") if isinstance(signature, Mapping) else None
        if not isinstance(inputs, list) or not inputs:
            raise ValueError("the signature has no inputs")
        names: list[str] = []
        types: list[str] = []
        for i, col in enumerate(inputs):
            if not isinstance(col, Mapping) or not isinstance(col.get("name"), str) or not col["name"]:
                raise ValueError(f"signature input {i} has no name")
            kind = str(col.get("type", "")).lower()
            if kind not in COLUMN_TYPES:
                raise ValueError(f"signature input {col['name']!r} has unsupported type {col.get('type')!r} "
                                 f"(supported: {', '.join(sorted(COLUMN_TYPES))})")
            if col["name"] in names:
                raise ValueError(f"signature input {col['name']!r} appears twice")
            names.append(col["name"])
            types.append(kind)
        return cls(tuple(names), tuple(types))

    @property
    def numeric(self) -> bool:
        """True when every column becomes a number (the array is float64, else object)."""
        return "string" not in self.types

    @cached_property
    def _accepted(self) -> tuple[tuple[type, ...], ...]:
        """Per column, the exact Python types the fast path lets through."""
        kinds = {"double": (float, int), "float": (float, int), "long": (int,), "integer": (int,),
                 "boolean": (bool,), "string": (str,)}
        return tuple(kinds[t] for t in self.types)

    @cached_property
    def _integer_columns(self) -> list[int]:
        return [i for i, t in enumerate(self.types) if t in INTEGER_TYPES]

    def _fast_array(self, records: list[Any]) -> np.ndarray | None:
        """The array when every record is plainly valid (the common case), else None: no errors built."""
        names, accepted, width = self.names, self._accepted, len(self.names)
        rows: list[list[Any]] = []
        for record in records:
            if type(record) is not dict or len(record) != width:
                return None
            try:
                row = [record[name] for name in names]
            except KeyError:
                return None
            for value, types in zip(row, accepted):  # noqa: B905 - both have one item per column
                if type(value) not in types:
                    return None
            rows.append(row)
        try:
            arr = np.array(rows, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):
            return None
        if not np.isfinite(arr).all():
            return None
        if self.max_abs is not None and (np.abs(arr) > self.max_abs).any():
            return None
        ints = self._integer_columns
        if ints and (np.abs(arr[:, ints]) >= 2**53).any():  # the slow path decides the edge exactly
            return None
        return arr

    def to_array(self, records: Any) -> np.ndarray:
        """Check ``records`` (a list of JSON objects) and return them as a 2-D array in column order."""
        if self.numeric and type(records) is list and records:
            fast = self._fast_array(records)
            if fast is not None:
                return fast
        return self._checked_array(records)

    def _checked_array(self, records: Any) -> np.ndarray:
        """Check every field of every record, listing each problem (the slow, thorough path)."""
        if not isinstance(records, list):
            raise RecordsInvalid([error(["records"], f"expected a list of records, got {_json_kind(records)}",
                                        "list_type")])
        if not records:
            raise RecordsInvalid([error(["records"], "at least one record is required", "too_short")])
        errors: list[dict[str, Any]] = []
        rows: list[list[Any]] = []
        columns = tuple(zip(self.names, self.types, strict=True))
        known = frozenset(self.names)
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                errors.append(error(["records", index], f"expected an object, got {_json_kind(record)}",
                                    "model_type"))
            else:
                row = self._row(record, index, columns, known, errors)
                if row is not None and self.max_abs is not None:
                    row = self._in_range(row, index, errors)
                if row is not None:
                    rows.append(row)
            if len(errors) >= MAX_ERRORS:
                errors.append(error(["records"], f"too many errors; only the first {MAX_ERRORS} are listed",
                                    "too_many_errors"))
                break
        if errors:
            raise RecordsInvalid(errors)
        return np.array(rows, dtype=np.float64 if self.numeric else object)

    def _in_range(self, row: list[Any], index: int, errors: list[dict[str, Any]]) -> list[Any] | None:
        """``row`` when every number is within ``max_abs``, else None with one error per field."""
        assert self.max_abs is not None
        bad = [name for name, value in zip(self.names, row, strict=True)
               if isinstance(value, float) and abs(value) > self.max_abs]
        for name in bad:
            errors.append(error(["records", index, name], f"must be at most {self.max_abs:.4g} in magnitude "
                                "(the model computes in float32)", "less_than_equal"))
        return None if bad else row

    @staticmethod
    def _row(record: dict[str, Any], index: int, columns: tuple[tuple[str, str], ...], known: frozenset[str],
             errors: list[dict[str, Any]]) -> list[Any] | None:
        row: list[Any] = []
        ok = True
        for name, kind in columns:
            value = record.get(name, _MISSING)
            vtype = type(value)
            if vtype is float and kind in NUMBER_TYPES:  # the common case, first
                if value - value != 0.0:  # NaN or +-inf
                    errors.append(error(["records", index, name], "must be a finite number", "finite_number"))
                    ok = False
                row.append(value)
                continue
            problem = _check(value, kind)
            if problem is None:
                row.append(float(value) if kind in INTEGER_TYPES or (kind in NUMBER_TYPES and vtype is int)
                           else value)
            else:
                errors.append(error(["records", index, name], *problem))
                ok = False
        if len(record) > len(columns) or not ok:
            for name in record:
                if name not in known:
                    errors.append(error(["records", index, name], "extra field not permitted", "extra_forbidden"))
                    ok = False
        return row if ok else None


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _check(value: Any, kind: str) -> tuple[str, str] | None:
    """None when ``value`` fits column type ``kind``, else ``(msg, type)``."""
    if value is _MISSING:
        return "field required", "missing"
    if kind in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {_EXPECTED[kind]}, got {_json_kind(value)}", _ERROR_TYPE[kind]
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an integer too large for a double
            finite = False
        return None if finite else ("must be a finite number", "finite_number")
    if kind in INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected {_EXPECTED[kind]}, got {_json_kind(value)}", _ERROR_TYPE[kind]
        if abs(value) > 2**53:
            return "integer out of range (|x| <= 2**53)", "int_range"
        return None
    if kind == "string":
        return None if isinstance(value, str) else (f"expected a string, got {_json_kind(value)}", "string_type")
    if kind == "boolean":
        return None if isinstance(value, bool) else (f"expected true or false, got {_json_kind(value)}",
                                                     "bool_type")
    return f"unsupported column type {kind!r}", "type_error"  # pragma: no cover - from_signature checks
