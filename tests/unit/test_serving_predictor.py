"""The Predictor: metadata, predictions, feature names, the verified tree fast path, loading."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression

from mlctl.core.errors import OperationFailed
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.serving import Predictor
from mlctl.serving.fastpath import compile_predict, probe_rows

N_FEATURES = 6
NAMES = [f"f{i}" for i in range(N_FEATURES)]


def signature(names: list[str] = NAMES) -> dict[str, Any]:
    return {"inputs": [{"name": n, "type": "double"} for n in names], "outputs": [{"name": "y", "type": "long"}]}


def artifact(sig: dict[str, Any] | None = None, path: Path = Path("model.skops"), sha: str = "0" * 64) -> ModelArtifact:
    return ModelArtifact(name="iris", version="3", alias="champion", path=path, sha256=sha, flavor="sklearn",
                         signature=signature() if sig is None else sig, run_id="r1")


def data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] > 0).astype(int) + (X[:, 3] > 1).astype(int)
    return X, y


def test_metadata_has_the_contracted_keys() -> None:
    X, y = data()
    p = Predictor(artifact(), LogisticRegression().fit(X, y))
    assert p.metadata() == {"name": "iris", "version": "3", "alias": "champion", "signature": signature(),
                            "sha256": "0" * 64, "flavor": "sklearn", "run_id": "r1"}
    assert p.signature == signature() and p.name == "iris" and p.version == "3"


def test_predictions_are_plain_json_values_equal_to_the_estimator() -> None:
    X, y = data()
    est = LogisticRegression().fit(X, y)
    out = Predictor(artifact(), est).predict(X[:10])
    assert out == est.predict(X[:10]).tolist()
    assert all(type(v) is int for v in out)


def test_string_labels_and_regression_values() -> None:
    X, y = data()
    labels = np.array(["no", "yes", "maybe"])[y]
    assert Predictor(artifact(), RandomForestClassifier(n_estimators=5, random_state=0).fit(X, labels)).predict(
        X[:3]) == RandomForestClassifier(n_estimators=5, random_state=0).fit(X, labels).predict(X[:3]).tolist()
    reg = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X[:, 0])
    values = Predictor(artifact(), reg).predict(X[:4])
    assert all(isinstance(v, float) for v in values)


def test_outputs_of_other_shapes_become_plain_values() -> None:
    class Listy:
        def predict(self, rows: np.ndarray) -> list[Any]:
            return [np.int64(7)] * len(rows)

    class Series:
        def predict(self, rows: np.ndarray) -> Any:
            return pd.Series(["a"] * len(rows))

    assert Predictor(artifact(), Listy()).predict(np.zeros((2, N_FEATURES))) == [7, 7]
    assert type(Predictor(artifact(), Listy()).predict(np.zeros((1, N_FEATURES)))[0]) is int
    assert Predictor(artifact(), Series()).predict(np.zeros((2, N_FEATURES))) == ["a", "a"]


def test_non_finite_outputs_become_null() -> None:
    class Weird:
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return np.array([np.nan, np.inf, 1.0])[: len(rows)]

    assert Predictor(artifact(), Weird()).predict(np.zeros((3, N_FEATURES))) == [None, None, 1.0]


@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=30, random_state=1),
    lambda: ExtraTreesClassifier(n_estimators=30, random_state=1),
    lambda: RandomForestClassifier(n_estimators=30, max_depth=3, class_weight="balanced", random_state=1),
    lambda: RandomForestRegressor(n_estimators=30, random_state=1),
    lambda: ExtraTreesRegressor(n_estimators=30, random_state=1),
])
def test_the_fast_path_equals_the_estimator_on_fresh_inputs(make: Any) -> None:
    X, y = data()
    est = make()
    target = y if hasattr(est, "predict_proba") else X[:, 0] * 3 + y
    est.fit(X, target)
    p = Predictor(artifact(), est)
    assert p.fast_path
    fresh = np.vstack([data(500, seed=9)[0], data(50, seed=10)[0] * 100])
    assert p.predict(fresh) == est.predict(fresh).tolist()
    assert Predictor(artifact(), est, fast_path=False).predict(fresh) == p.predict(fresh)


def test_the_fast_path_is_not_used_for_other_models() -> None:
    X, y = data()
    assert compile_predict(LogisticRegression().fit(X, y)) is None
    assert compile_predict(GradientBoostingClassifier(n_estimators=5).fit(X, y)) is None
    multi = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.c_[y, y])
    assert compile_predict(multi) is None
    assert not Predictor(artifact(), LogisticRegression().fit(X, y)).fast_path

    class Sub(RandomForestClassifier):  # a subclass may change predict: not trusted
        pass

    assert compile_predict(Sub(n_estimators=3).fit(X, y)) is None


def test_the_fast_path_is_refused_when_it_disagrees_with_predict() -> None:
    X, y = data()
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    original = est.predict

    def lying(rows: np.ndarray) -> np.ndarray:  # disagrees with any faithful copy of the forest
        return original(rows) + 100

    est.predict = lying  # type: ignore[method-assign]
    assert compile_predict(est) is None


def test_probe_rows_cover_scales() -> None:
    probe = probe_rows(4, n_rows=16)
    assert probe.shape == (16, 4) and not probe[0].any() and np.abs(probe).max() > 100


def test_a_model_fitted_on_named_columns_gets_them_by_name_in_its_own_order() -> None:
    X, y = data()
    frame = pd.DataFrame(X, columns=NAMES)
    shuffled = list(reversed(NAMES))  # the signature lists the columns in another order
    rows = frame[shuffled].to_numpy()[:20]
    for est in (RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, y),
                LogisticRegression().fit(frame, y)):
        p = Predictor(artifact(signature(shuffled)), est)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "X does not have valid feature names" warning
            assert p.predict(rows) == est.predict(frame.iloc[:20]).tolist()


def test_a_signature_naming_other_columns_than_the_model_is_refused() -> None:
    X, y = data()
    est = LogisticRegression().fit(pd.DataFrame(X, columns=NAMES), y)
    with pytest.raises(OperationFailed, match="not the columns the model was fitted on"):
        Predictor(artifact(signature([*NAMES[:-1], "other"])), est)


def test_without_a_signature_the_fitted_column_names_are_used() -> None:
    X, y = data()
    est = LogisticRegression().fit(pd.DataFrame(X, columns=NAMES), y)
    p = Predictor(artifact({}), est)
    assert p.schema.names == tuple(NAMES) and p.signature == {"inputs": [{"name": n, "type": "double"} for n in NAMES]}


def test_no_signature_and_no_column_names_is_an_error() -> None:
    X, y = data()
    with pytest.raises(OperationFailed, match="no inputs"):
        Predictor(artifact({}), LogisticRegression().fit(X, y))


def test_an_object_without_predict_is_refused() -> None:
    with pytest.raises(OperationFailed, match="no predict method"):
        Predictor(artifact(), object())


def test_mixed_column_types_reach_a_pipeline_as_a_dataframe() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"city": ["a", "b", "c", "a"] * 10, "n": np.arange(40.0), "flag": [True, False] * 20})
    y = (frame["n"] > 20).astype(int)
    pipe = make_pipeline(ColumnTransformer([("oh", OneHotEncoder(), ["city"])], remainder="passthrough"),
                         LogisticRegression()).fit(frame, y)
    sig = {"inputs": [{"name": "n", "type": "long"}, {"name": "city", "type": "string"},
                      {"name": "flag", "type": "boolean"}]}
    p = Predictor(artifact(sig), pipe)
    rows = p.schema.to_array([{"n": 3, "city": "b", "flag": True}, {"n": 39, "city": "c", "flag": False}])
    assert p.predict(rows) == pipe.predict(frame.iloc[[3, 39]][["city", "n", "flag"]]).tolist()


def test_from_artifact_loads_a_saved_model_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    from mlctl.lifecycle.serialize import ArtifactTampered, save_model

    X, y = data()
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    path = tmp_path / "model.skops"
    sha = save_model(est, path)
    p = Predictor.from_artifact(artifact(path=path, sha=sha))
    assert p.predict(X[:5]) == est.predict(X[:5]).tolist()
    assert p.fast_path and not Predictor.from_artifact(artifact(path=path, sha=sha), fast_path=False).fast_path
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ArtifactTampered):
        Predictor.from_artifact(artifact(path=path, sha=sha))
