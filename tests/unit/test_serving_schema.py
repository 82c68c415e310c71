"""Records checked against a signature: arrays in signature order, or field-level errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlctl.serving.schema import MAX_ERRORS, InputSchema, RecordsInvalid

SIG = {"inputs": [{"name": "x", "type": "double"}, {"name": "n", "type": "long"},
                  {"name": "f", "type": "float"}, {"name": "i", "type": "integer"},
                  {"name": "b", "type": "boolean"}]}


def errors_of(schema: InputSchema, records: Any) -> list[tuple[list[Any], str]]:
    with pytest.raises(RecordsInvalid) as info:
        schema.to_array(records)
    return [(e["loc"], e["type"]) for e in info.value.errors]


@pytest.fixture
def schema() -> InputSchema:
    return InputSchema.from_signature(SIG)


def test_valid_records_become_a_float_array_in_signature_order(schema: InputSchema) -> None:
    records = [{"b": True, "i": 3, "f": 2, "n": -4, "x": 0.5}, {"x": 1, "n": 0, "f": 1.5, "i": 2**53, "b": False}]
    arr = schema.to_array(records)
    assert arr.dtype == np.float64 and arr.shape == (2, 5)
    assert arr.tolist() == [[0.5, -4.0, 2.0, 3.0, 1.0], [1.0, 0.0, 1.5, float(2**53), 0.0]]
    assert schema.numeric


def test_string_columns_give_an_object_array() -> None:
    schema = InputSchema.from_signature({"inputs": [{"name": "city", "type": "string"},
                                                    {"name": "n", "type": "long"}]})
    arr = schema.to_array([{"city": "Oslo", "n": 2}])
    assert arr.dtype == object and arr.tolist() == [["Oslo", 2.0]]
    assert not schema.numeric


@pytest.mark.parametrize(("record", "expected"), [
    ({"n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "missing")]),
    ({"x": "1.0", "n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "float_type")]),
    ({"x": True, "n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "float_type")]),
    ({"x": None, "n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "float_type")]),
    ({"x": [1.0], "n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "float_type")]),
    ({"x": 1.0, "n": 1.5, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "n"], "int_type")]),
    ({"x": 1.0, "n": 1.0, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "n"], "int_type")]),
    ({"x": 1.0, "n": False, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "n"], "int_type")]),
    ({"x": 1.0, "n": 2**60, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "n"], "int_range")]),
    ({"x": 1.0, "n": 1, "f": 1.0, "i": 1, "b": 1}, [(["records", 0, "b"], "bool_type")]),
    ({"x": float("nan"), "n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "finite_number")]),
    ({"x": 1.0, "n": 1, "f": float("-inf"), "i": 1, "b": True}, [(["records", 0, "f"], "finite_number")]),
    ({"x": 10**400, "n": 1, "f": 1.0, "i": 1, "b": True}, [(["records", 0, "x"], "finite_number")]),
    ({"x": 1.0, "n": 1, "f": 1.0, "i": 1, "b": True, "zz": 0}, [(["records", 0, "zz"], "extra_forbidden")]),
])
def test_each_bad_field_is_named(schema: InputSchema, record: dict[str, Any], expected: list[Any]) -> None:
    assert errors_of(schema, [record]) == expected


def test_every_problem_of_every_record_is_listed(schema: InputSchema) -> None:
    good = {"x": 1.0, "n": 1, "f": 1.0, "i": 1, "b": True}
    records = [good, {**good, "x": "a", "q": 1}, 7, {k: v for k, v in good.items() if k != "b"}]
    assert errors_of(schema, records) == [
        (["records", 1, "x"], "float_type"), (["records", 1, "q"], "extra_forbidden"),
        (["records", 2], "model_type"), (["records", 3, "b"], "missing")]


def test_messages_say_what_was_expected_and_what_came(schema: InputSchema) -> None:
    with pytest.raises(RecordsInvalid) as info:
        schema.to_array([{"x": "1", "n": 1, "f": 1.0, "i": 1, "b": True}])
    assert info.value.errors == [{"loc": ["records", 0, "x"], "msg": "expected a number, got a string",
                                  "type": "float_type"}]


@pytest.mark.parametrize(("records", "kind"), [([], "too_short"), ({"x": 1}, "list_type"), ("rows", "list_type"),
                                               (None, "list_type")])
def test_the_records_must_be_a_non_empty_list(schema: InputSchema, records: Any, kind: str) -> None:
    assert errors_of(schema, records) == [(["records"], kind)]


def test_errors_are_capped(schema: InputSchema) -> None:
    errs = errors_of(schema, [{"x": "bad"}] * 1000)
    assert len(errs) == MAX_ERRORS + 1
    assert errs[-1] == (["records"], "too_many_errors")


@pytest.mark.parametrize("signature", [
    {}, {"inputs": []}, {"inputs": "x"}, {"inputs": [{"type": "double"}]},
    {"inputs": [{"name": "a", "type": "tensor"}]},
    {"inputs": [{"name": "a", "type": "double"}, {"name": "a", "type": "long"}]},
])
def test_unusable_signatures_are_refused(signature: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        InputSchema.from_signature(signature)


def test_the_fast_path_agrees_with_the_thorough_one() -> None:
    import random

    schema = InputSchema.from_signature(SIG)
    rng = random.Random(11)
    values: dict[str, list[Any]] = {
        "x": [0.5, -2, 3, 1e308, 2**70, "1", None, True, float("nan")],
        "n": [0, -7, 2**53, 2**53 + 1, -(2**53), 1.0, False, "2"],
        "f": [1.5, 0, float("inf"), [1]],
        "i": [1, 2**52, 3.5, None],
        "b": [True, False, 0, "true"],
    }
    for _ in range(3000):
        record: dict[str, Any] = {k: rng.choice(v) for k, v in values.items()}
        if rng.random() < 0.1:
            record.pop(rng.choice(list(record)))
        if rng.random() < 0.1:
            record["extra"] = 1
        records = [record, {"x": 1.0, "n": 1, "f": 1.0, "i": 1, "b": True}]
        fast = schema._fast_array(records)
        try:
            thorough = schema._checked_array(records)
        except RecordsInvalid:
            assert fast is None, record
        else:
            if fast is not None:
                assert fast.tolist() == thorough.tolist()
            assert schema.to_array(records).tolist() == thorough.tolist()

