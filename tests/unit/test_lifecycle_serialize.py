"""Safe model files: skops with explicit trusted types, SHA-256 verified before every load."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlctl.core.errors import OperationFailed, UsageError, exit_code_for
from mlctl.lifecycle import estimators, serialize
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.serialize import ArtifactTampered


def _data(task: str) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.RandomState(3)
    X = pd.DataFrame({"a": rng.rand(80), "b": rng.rand(80), "colour": ["red", "green", "blue", "red"] * 20})  # noqa: N806
    X.loc[5, "b"] = np.nan
    y = X["a"] * 3 if task == "regression" else (X["a"] > 0.5).map({True: "hi", False: "lo"})
    return X, y


def _artifact(path: Path, sha: str, flavor: str = "sklearn") -> ModelArtifact:
    return ModelArtifact(name="m", version="1", alias=None, path=path, sha256=sha, flavor=flavor)


@pytest.mark.parametrize(("name", "task"), [(n, t) for n, ts in estimators.BUILTINS.items() for t in ts])
def test_every_builtin_round_trips_behind_the_preprocessing(name: str, task: str, tmp_path: Path) -> None:
    X, y = _data(task)  # noqa: N806
    est = estimators.build_estimator(name, task, seed=0)
    small = {k: v for k, v in {"n_estimators": 5, "max_iter": 10}.items() if k in est.get_params()}
    model = estimators.with_preprocessing(est.set_params(**small), X).fit(X, y)
    path = tmp_path / "model.skops"
    sha = serialize.save_model(model, path)
    assert sha == serialize.sha256_file(path)
    assert set(serialize.trusted_types(model)) <= serialize.TRUSTED_BASE  # built-ins need nothing else
    loaded = serialize.load_model(_artifact(path, sha))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_tampered_file_is_refused_before_skops_opens_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data("classification")  # noqa: N806
    path = tmp_path / "model.skops"
    sha = serialize.save_model(estimators.build_estimator("decision_tree", "classification").fit(X[["a"]], y), path)
    with path.open("ab") as fh:
        fh.write(b"\0")
    import skops.io

    def never(*a: object, **k: object) -> None:
        raise AssertionError("skops must not open a tampered file")

    monkeypatch.setattr(skops.io, "load", never)
    monkeypatch.setattr(skops.io, "get_untrusted_types", never)
    with pytest.raises(ArtifactTampered, match="refusing to load it") as info:
        serialize.load_model(_artifact(path, sha))
    assert isinstance(info.value, OperationFailed) and exit_code_for(info.value) == 1
    assert info.value.details["expected"] == sha and info.value.type_name == "ArtifactTampered"
    with pytest.raises(OperationFailed, match="does not exist"):
        serialize.load_model(_artifact(tmp_path / "gone.skops", sha))
    with pytest.raises(UsageError, match="flavor 'onnx' is not supported"):
        serialize.load_model(_artifact(path, sha, flavor="onnx"))


@pytest.fixture
def custom_module(tmp_path: Path):  # noqa: ANN201
    """An importable module with a custom transformer class (not trusted by default)."""
    (tmp_path / "mlctl_custom_tx.py").write_text(
        "from sklearn.base import BaseEstimator, TransformerMixin\n"
        "class Doubler(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None):\n        return self\n"
        "    def transform(self, X):\n        return X * 2\n")
    sys.path.insert(0, str(tmp_path))
    import mlctl_custom_tx

    yield mlctl_custom_tx
    sys.path.remove(str(tmp_path))
    sys.modules.pop("mlctl_custom_tx", None)


def _custom_model(module):  # noqa: ANN001, ANN202
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline

    X, y = _data("regression")  # noqa: N806
    return Pipeline([("double", module.Doubler()), ("lr", LinearRegression())]).fit(X[["a"]], y)


def test_custom_types_are_derived_from_the_estimator_and_refused_unless_recorded(custom_module, tmp_path: Path
                                                                                 ) -> None:
    model = _custom_model(custom_module)
    assert serialize.trusted_types(model) == ["mlctl_custom_tx.Doubler"]
    path = tmp_path / "model.skops"
    sha = serialize.save_model(model, path)
    with pytest.raises(OperationFailed, match="needs types that are not trusted: mlctl_custom_tx.Doubler"):
        serialize.load_model(_artifact(path, sha))
    assert serialize.load_model(_artifact(path, sha), extra_trusted=["mlctl_custom_tx.Doubler"]) is not None


def test_saving_refuses_types_the_estimator_does_not_explain(custom_module, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialize, "allowed_types", lambda est: set(serialize.TRUSTED_BASE))
    with pytest.raises(OperationFailed, match="not part of the estimator: mlctl_custom_tx.Doubler"):
        serialize.save_model(_custom_model(custom_module), tmp_path / "model.skops")
    assert not (tmp_path / "model.skops").exists()


def test_mlflow_model_folder_records_the_trusted_types(custom_module, tmp_path: Path) -> None:
    model = _custom_model(custom_module)
    signature = {"inputs": [{"name": "a", "type": "double"}], "outputs": [{"name": "y", "type": "double"}]}
    X, _ = _data("regression")  # noqa: N806
    saved = serialize.save_mlflow_model(model, tmp_path / "model", signature=signature, input_example=X[["a"]].head(2))
    assert saved.model_file == tmp_path / "model" / "model.skops"
    assert saved.sha256 == serialize.sha256_file(saved.model_file)
    assert serialize.recorded_trusted_types(saved.model_file) == ["mlctl_custom_tx.Doubler"]
    mlmodel = (tmp_path / "model" / "MLmodel").read_text()
    assert "serialization_format: skops" in mlmodel and "python_function" in mlmodel
    from mlctl.lifecycle.registry import read_signature

    assert read_signature(tmp_path / "model" / "MLmodel") == signature
    loaded = serialize.load_model(_artifact(saved.model_file, saved.sha256))
    np.testing.assert_allclose(loaded.predict(X[["a"]]), model.predict(X[["a"]]))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_same_model_trained_twice_gives_the_same_bytes(task: str, tmp_path: Path) -> None:
    X, y = _data(task)  # noqa: N806

    def train() -> object:
        est = estimators.build_estimator("random_forest", task, seed=0).set_params(n_estimators=5)
        return estimators.with_preprocessing(est, X).fit(X, y)

    first, second = train(), train()
    sha1 = serialize.save_model(first, tmp_path / "a" / "model.skops")
    sha2 = serialize.save_model(second, tmp_path / "b" / "model.skops")
    assert sha1 == sha2
    assert (tmp_path / "a" / "model.skops").read_bytes() == (tmp_path / "b" / "model.skops").read_bytes()
    signature = {"inputs": [{"name": c, "type": "double"} for c in ("a", "b")] + [{"name": "colour", "type": "string"}],
                 "outputs": [{"name": "y", "type": "string" if task == "classification" else "double"}]}
    saved = [serialize.save_mlflow_model(m, tmp_path / f"mlflow-{i}", signature=signature)
             for i, m in enumerate((first, second))]
    assert saved[0].sha256 == saved[1].sha256 == serialize.sha256_file(saved[0].model_file)
    loaded = serialize.load_model(_artifact(saved[1].model_file, saved[1].sha256))
    pd.testing.assert_series_equal(pd.Series(loaded.predict(X)), pd.Series(first.predict(X)))
    # a different model gives different bytes
    other = estimators.build_estimator("random_forest", task, seed=1).set_params(n_estimators=5)
    assert serialize.save_model(estimators.with_preprocessing(other, X).fit(X, y), tmp_path / "c.skops") != sha1


def test_canonical_archives_keep_shared_references_shared() -> None:
    import skops.io as sio

    shared = np.arange(6.0)
    obj = {"a": shared, "b": shared, "c": np.ones(3)}
    data = serialize._canonical_skops(sio.dumps(obj))
    assert data == serialize._canonical_skops(sio.dumps({"a": shared, "b": shared, "c": np.ones(3)}))
    back = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert back["a"] is back["b"] and np.array_equal(back["a"], shared) and np.array_equal(back["c"], np.ones(3))
