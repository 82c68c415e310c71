"""Estimators by name: the built-in scikit-learn models, ``module:function`` models, torch
models (``torch:module:function``), and the default Optuna search space of each.

The tables are plain data (class paths as strings) so the ``train:`` spec validates without
importing scikit-learn; :func:`build_estimator` imports the class when a model is built.

A ``module:function`` model names a function that takes no arguments and returns an unfitted
estimator (anything with ``fit``/``predict`` and scikit-learn's ``get_params``/``set_params``);
the module is imported with the project root on ``sys.path``. ``params`` are applied with
``set_params`` in both cases, and ``random_state`` is set to the spec's seed unless given.

A ``torch:module:function`` model names a function returning a ``torch.nn.Module``; mlctl trains it
through :class:`mlctl.lifecycle.torch_model.TorchEstimator` (imported only when such a model is
built), whose parameters are ``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``random_state``
and ``module__<name>`` (passed to the function).

>>> builtin_names()[:3]
['decision_tree', 'extra_trees', 'gradient_boosting']
>>> supports("logistic_regression", "regression")
False
>>> is_custom("mymodels:make_model")
True
>>> is_torch("torch:mymodels:make_net"), torch_reference("torch:mymodels:make_net")
(True, 'mymodels:make_net')
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlctl.core.errors import ConfigError

#: built-in name -> task -> "module:Class"
BUILTINS: dict[str, dict[str, str]] = {
    "random_forest": {"classification": "sklearn.ensemble:RandomForestClassifier",
                      "regression": "sklearn.ensemble:RandomForestRegressor"},
    "extra_trees": {"classification": "sklearn.ensemble:ExtraTreesClassifier",
                    "regression": "sklearn.ensemble:ExtraTreesRegressor"},
    "gradient_boosting": {"classification": "sklearn.ensemble:GradientBoostingClassifier",
                          "regression": "sklearn.ensemble:GradientBoostingRegressor"},
    "hist_gradient_boosting": {"classification": "sklearn.ensemble:HistGradientBoostingClassifier",
                               "regression": "sklearn.ensemble:HistGradientBoostingRegressor"},
    "logistic_regression": {"classification": "sklearn.linear_model:LogisticRegression"},
    "ridge": {"classification": "sklearn.linear_model:RidgeClassifier", "regression": "sklearn.linear_model:Ridge"},
    "linear_regression": {"regression": "sklearn.linear_model:LinearRegression"},
    "decision_tree": {"classification": "sklearn.tree:DecisionTreeClassifier",
                      "regression": "sklearn.tree:DecisionTreeRegressor"},
    "knn": {"classification": "sklearn.neighbors:KNeighborsClassifier",
            "regression": "sklearn.neighbors:KNeighborsRegressor"},
}

#: parameters a built-in gets before the spec's own params (which win)
BUILTIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 1000},
    "random_forest": {"n_jobs": 1},
    "extra_trees": {"n_jobs": 1},
}

_TREES: dict[str, dict[str, Any]] = {
    "n_estimators": {"type": "int", "low": 50, "high": 300, "step": 50},
    "max_depth": {"type": "int", "low": 2, "high": 16},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 10},
    "max_features": {"type": "categorical", "choices": ["sqrt", "log2", 1.0]},
}

#: built-in name -> parameter -> search space (the shape of ``train.search_space`` entries)
DEFAULT_SEARCH_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "random_forest": _TREES,
    "extra_trees": _TREES,
    "gradient_boosting": {
        "n_estimators": {"type": "int", "low": 50, "high": 300, "step": 50},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "max_depth": {"type": "int", "low": 2, "high": 6},
        "subsample": {"type": "float", "low": 0.6, "high": 1.0},
    },
    "hist_gradient_boosting": {
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "max_iter": {"type": "int", "low": 50, "high": 300, "step": 50},
        "max_leaf_nodes": {"type": "int", "low": 8, "high": 64, "log": True},
        "l2_regularization": {"type": "float", "low": 1e-6, "high": 1.0, "log": True},
    },
    "logistic_regression": {"C": {"type": "float", "low": 1e-3, "high": 100.0, "log": True}},
    "ridge": {"alpha": {"type": "float", "low": 1e-3, "high": 100.0, "log": True}},
    "decision_tree": {
        "max_depth": {"type": "int", "low": 2, "high": 16},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 20},
    },
    "knn": {
        "n_neighbors": {"type": "int", "low": 1, "high": 30},
        "weights": {"type": "categorical", "choices": ["uniform", "distance"]},
    },
}

#: the default search space of torch models (parameters of TorchEstimator)
TORCH_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "epochs": {"type": "int", "low": 10, "high": 100, "step": 10},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 0.1, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
}

_CUSTOM = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
TORCH_PREFIX = "torch:"


def builtin_names() -> list[str]:
    """The built-in model names, sorted."""
    return sorted(BUILTINS)


def is_custom(model: str) -> bool:
    """True for a ``module:function`` reference (``torch:...`` always means a torch model)."""
    return bool(_CUSTOM.match(model)) and not model.startswith(TORCH_PREFIX)


def is_torch(model: str) -> bool:
    """True for a ``torch:module:function`` reference."""
    return model.startswith(TORCH_PREFIX) and is_custom(model[len(TORCH_PREFIX):])


def torch_reference(model: str) -> str:
    """The ``module:function`` part of ``torch:module:function``."""
    return model[len(TORCH_PREFIX):]


def supports(model: str, task: str) -> bool:
    """True when the built-in ``model`` has a variant for ``task`` (custom and torch models: always)."""
    return is_custom(model) or is_torch(model) or task in BUILTINS.get(model, {})


def check_model_name(model: str) -> str:
    """``model`` if it is a built-in name, ``module:function`` or ``torch:module:function``; else
    ValueError naming the choices."""
    if model in BUILTINS or is_custom(model) or is_torch(model):
        return model
    if model.startswith(TORCH_PREFIX):
        raise ValueError(f"torch model '{model}' must be written torch:module:function "
                         "(e.g. torch:models.net:make_net)")
    import difflib

    close = difflib.get_close_matches(model, BUILTINS, n=1)
    maybe = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(f"unknown model '{model}'; {maybe}built-in models: {', '.join(builtin_names())}, "
                     "module:function, or torch:module:function")


def default_search_space(model: str) -> dict[str, dict[str, Any]] | None:
    """The default search space of a built-in or torch model, or None (custom models have none)."""
    space = TORCH_SEARCH_SPACE if is_torch(model) else DEFAULT_SEARCH_SPACES.get(model)
    return {k: dict(v) for k, v in space.items()} if space is not None else None


def import_attr(ref: str, root: Path | None = None) -> Any:
    """The object ``module:name`` names, imported with ``root`` (the project) on the Python path.

    Raises :class:`ConfigError` (about ``train.model``) when the module or the name is missing.
    """
    module_name, attr = ref.split(":")
    added = False
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
        added = True
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"train.model: cannot import module '{module_name}': {exc}",
                          hint="module:function is imported with the project root on the Python path") from exc
    finally:
        if added:
            sys.path.remove(str(root))
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"train.model: module '{module_name}' has no attribute '{attr}'") from None


def estimator_class(model: str, task: str) -> type:
    """The scikit-learn class of a built-in model for ``task``."""
    path = BUILTINS[model].get(task)
    if path is None:
        tasks = " or ".join(BUILTINS[model])
        raise ConfigError(f"train.model: '{model}' does not support {task} (only {tasks})")
    cls: type = import_attr(path, None)
    return cls


def build_estimator(model: str, task: str, params: Mapping[str, Any] | None = None, *, seed: int | None = None,
                    root: Path | None = None) -> Any:
    """An unfitted estimator for ``model`` and ``task`` with ``params`` applied.

    Unknown parameters raise :class:`ConfigError` listing the valid ones.

    >>> build_estimator("ridge", "regression", {"alpha": 2.0}).alpha
    2.0
    """
    params = dict(params or {})
    if is_torch(model):
        from mlctl.lifecycle.torch_model import build_torch_estimator

        return build_torch_estimator(torch_reference(model), task, params, seed=seed, root=root)
    if is_custom(model):
        factory = import_attr(model, root)
        if not callable(factory):
            raise ConfigError(f"train.model: '{model}' is not callable")
        est = factory()
        if not (hasattr(est, "fit") and hasattr(est, "predict") and hasattr(est, "set_params")):
            raise ConfigError(f"train.model: '{model}' returned {type(est).__name__}, not an estimator",
                              hint="return an unfitted scikit-learn compatible estimator (fit/predict/set_params)")
    elif model in BUILTINS:
        est = estimator_class(model, task)()
        params = {**BUILTIN_DEFAULTS.get(model, {}), **params}
    else:
        try:
            check_model_name(model)
        except ValueError as exc:
            raise ConfigError(f"train.model: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover
    valid = est.get_params(deep=False)
    if seed is not None and "random_state" in valid and "random_state" not in params:
        params["random_state"] = seed
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"train.params: unknown parameter(s) {', '.join(unknown)} for model '{model}'",
                          hint=f"valid parameters: {', '.join(sorted(valid))}")
    est.set_params(**params)
    return est


def column_kinds(X: Any) -> dict[str, str]:  # noqa: N803 - scikit-learn naming
    """Column -> ``boolean``, ``long``, ``double`` or ``string`` (the model signature's types)."""
    from pandas.api import types as pt

    kinds = {}
    for name in X.columns:
        col = X[name]
        if pt.is_bool_dtype(col):
            kinds[str(name)] = "boolean"
        elif pt.is_integer_dtype(col):
            kinds[str(name)] = "long"
        elif pt.is_float_dtype(col):
            kinds[str(name)] = "double"
        else:
            kinds[str(name)] = "string"
    return kinds


def with_preprocessing(estimator: Any, X: Any) -> Any:  # noqa: N803
    """``estimator`` itself when ``X`` is all numeric without gaps; else a Pipeline that imputes
    missing numbers (median) and one-hot encodes text columns (unknown categories ignored) before it.

    Torch models are never wrapped: they fill gaps themselves (the training medians are saved with
    the network's weights) and refuse text columns (the whole model must be one torch file).

    Parameters of the wrapped estimator are then ``model__<name>``; use :func:`final_estimator`.
    """
    if getattr(estimator, "mlctl_flavor", "sklearn") != "sklearn":
        return estimator
    kinds = column_kinds(X)
    text = [c for c, k in kinds.items() if k == "string"]
    numeric = [c for c, k in kinds.items() if k != "string"]
    gaps = bool(numeric) and bool(X[numeric].isna().to_numpy().any())
    if not text and not gaps:
        return estimator
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("num", SimpleImputer(strategy="median") if gaps else "passthrough", numeric))
    if text:
        encode = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                           ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
        parts.append(("cat", encode, text))
    return Pipeline([("prep", ColumnTransformer(parts)), ("model", estimator)])


def final_estimator(model: Any) -> Any:
    """The estimator inside a preprocessing Pipeline (or the model itself)."""
    steps = getattr(model, "named_steps", None)
    return steps["model"] if steps is not None and "model" in steps else model
