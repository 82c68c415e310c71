from __future__ import annotations

import pytest

from mlctl.core import errors as e


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (e.MlctlError("x"), 1),
        (e.OperationFailed("x"), 1),
        (e.StateError("x"), 1),
        (e.UsageError("x"), 2),
        (e.ConfigError("x"), 2),
        (e.NotAProject("x"), 2),
        (e.NotFound("x"), 2),
        (e.CheckFailed("x"), 3),
        (e.ServiceUnavailable("x"), 4),
        (KeyboardInterrupt(), 130),
        (RuntimeError("x"), 1),
    ],
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert e.exit_code_for(exc) == code


def test_to_dict_has_stable_keys_and_type_name() -> None:
    err = e.ServiceUnavailable("prometheus down", hint="start it", details={"url": "http://x"})
    assert err.to_dict() == {
        "type": "ServiceUnavailable",
        "message": "prometheus down",
        "hint": "start it",
        "details": {"url": "http://x"},
    }


def test_require_names_the_extra() -> None:
    with pytest.raises(e.MissingExtra) as info:
        e.require("surely_not_a_module_xyz", "ml", feature="training")
    assert "surely_not_a_module_xyz" in info.value.message
    assert "training" in info.value.message
    assert info.value.hint == "pip install 'mlctl[ml]'"
    assert info.value.exit_code == 2
