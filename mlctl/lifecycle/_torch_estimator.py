"""The torch estimator: a ``torch.nn.Module`` trained behind the scikit-learn estimator interface.

A ``train.model`` of the form ``torch:package.module:function`` names a function that builds a
``torch.nn.Module``. The function is called with keyword arguments ``n_features`` and
``n_outputs`` (when it accepts them) plus any ``module__<name>`` parameters of ``train.params``;
the module takes a float tensor ``(batch, n_features)`` and returns logits ``(batch, n_classes)``
for classification or values ``(batch,)`` / ``(batch, 1)`` for regression.

:class:`TorchEstimator` wraps it so cross-validation, metrics, gates and tuning treat it like any
scikit-learn estimator: ``fit`` imputes missing numbers (training medians), standardises inputs
(and the target, for regression) and trains on the CPU with AdamW on seeded mini-batches, so the
same data, parameters and seed give the same model; ``predict`` / ``predict_proba`` run the
fitted :class:`~mlctl.lifecycle.torch_model.TorchModel`, which also records the function's
reference and arguments so the saved file can rebuild the network.

Training parameters (``train.params``): ``epochs``, ``lr``, ``batch_size``, ``weight_decay``,
``random_state`` (set to ``train.seed`` unless given), and ``module__<name>`` for the function.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlctl.core.errors import ConfigError, OperationFailed, UsageError
from mlctl.lifecycle._torch_artifact import FLAVOR, TorchModel, as_matrix, reference_of, scaled_head, torch_module
from mlctl.lifecycle._torch_optim import AdamW

__all__ = [
    "MODULE_PREFIX",
    "PARAMS",
    "TorchEstimator",
    "TrainingDiverged",
    "accepted_module_params",
    "build_torch_estimator",
]

MODULE_PREFIX = "module__"
_SIZE_ARGS = ("n_features", "n_outputs")


@dataclass(frozen=True)
class _Param:
    kind: type
    check: Callable[[Any], bool]
    rule: str


#: The training parameters and what each accepts (validated before anything is trained).
PARAMS: dict[str, _Param] = {
    "epochs": _Param(int, lambda v: v >= 1, "an integer >= 1"),
    "lr": _Param(float, lambda v: v > 0 and math.isfinite(v), "a number > 0"),
    "batch_size": _Param(int, lambda v: v >= 1, "an integer >= 1"),
    "weight_decay": _Param(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0"),
    "random_state": _Param(int, lambda v: v is None or v >= 0, "an integer >= 0 or null"),
}


class TrainingDiverged(OperationFailed, ValueError):
    """The training loss became NaN or infinite (a tuning trial with it counts as failed)."""


def _keywords(factory: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword names ``factory`` takes, and whether it also takes ``**kwargs``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return set(), True
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in sig.parameters.values() if p.kind in kinds}
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def accepted_module_params(factory: Callable[..., Any]) -> set[str] | None:
    """Names ``factory`` takes besides the sizes; None when it takes ``**kwargs`` (anything goes)."""
    names, var_kw = _keywords(factory)
    return None if var_kw else names - set(_SIZE_ARGS)


class TorchEstimator:
    """A scikit-learn compatible estimator training the ``torch.nn.Module`` that ``module`` builds.

    ``module`` is the function (or its ``package.module:function`` reference, imported at fit).
    Parameters follow :data:`PARAMS`; ``module__<name>=value`` go to the function. Learned
    attributes: ``model_`` (a :class:`TorchModel`), ``classes_``, ``n_features_in_``,
    ``feature_names_in_`` (DataFrame inputs), ``loss_curve_`` (mean loss per epoch).
    """

    mlctl_flavor = FLAVOR

    def __init__(
        self,
        *,
        module: Callable[..., Any] | str,
        task: str = "classification",
        epochs: int = 50,
        lr: float = 0.01,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        random_state: int | None = None,
        **module_params: Any,
    ) -> None:
        self.module = module
        self.task = task
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.module_params: dict[str, Any] = {}
        self.set_params(**module_params)

    # -- scikit-learn parameter protocol --------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """``module``, ``task``, the training parameters and ``module__<name>`` ones."""
        out: dict[str, Any] = {"module": self.module, "task": self.task}
        out.update({name: getattr(self, name) for name in PARAMS})
        out.update({f"{MODULE_PREFIX}{k}": v for k, v in self.module_params.items()})
        return out

    def set_params(self, **params: Any) -> TorchEstimator:
        for key, value in params.items():
            if key.startswith(MODULE_PREFIX) and len(key) > len(MODULE_PREFIX):
                self.module_params[key[len(MODULE_PREFIX) :]] = value
            elif key in PARAMS or key in ("module", "task"):
                setattr(self, key, value)
            else:
                raise ValueError(f"unknown parameter '{key}' for TorchEstimator")
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k != "module")
        return f"TorchEstimator(module={reference_of(self.module)}, {shown})"

    def validate_params(self) -> None:
        """Raise :class:`ConfigError` for a training parameter outside its rule."""
        if self.task not in ("classification", "regression"):
            raise ConfigError(f"train.task: torch models do classification or regression, not {self.task!r}")
        for name, p in PARAMS.items():
            value = getattr(self, name)
            if name == "random_state" and value is None:
                continue
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if p.kind is int:
                ok_type = ok_type and float(value).is_integer()
            if not ok_type or not p.check(value):
                raise ConfigError(f"train.params: {name} must be {p.rule} (got {value!r})")

    # -- fitting --------------------------------------------------------------------------------
    def _factory(self) -> Callable[..., Any]:
        if isinstance(self.module, str):
            from mlctl.lifecycle.estimators import import_attr

            return import_attr(self.module)
        return self.module

    def _build(self, torch: Any, n_features: int, n_outputs: int) -> tuple[Any, dict[str, Any]]:
        """The network and the keyword arguments it was built with (recorded in the saved file)."""
        factory = self._factory()
        names, var_kw = _keywords(factory)
        kwargs = dict(self.module_params)
        sizes = {"n_features": n_features, "n_outputs": n_outputs}
        kwargs.update({k: v for k, v in sizes.items() if var_kw or k in names})
        try:
            net = factory(**kwargs)
        except TypeError as exc:
            raise ConfigError(
                f"train.model: calling {reference_of(self.module)} failed: {exc}",
                hint="the function takes n_features, n_outputs and the module__<name> params",
            ) from exc
        if not isinstance(net, torch.nn.Module):
            raise UsageError(
                f"train.model: {reference_of(self.module)} returned {type(net).__name__}, not a torch.nn.Module",
                hint="return a torch.nn.Module mapping a float tensor (batch, n_features) to logits "
                "(classification) or values (regression)",
            )
        return net, kwargs

    def _check_output(self, torch: Any, net: Any, n_features: int, n_outputs: int) -> None:
        with torch.no_grad():
            out = net(torch.zeros(2, n_features))
        shape = tuple(getattr(out, "shape", ()))
        ok = shape == (2, n_outputs) or (self.task == "regression" and shape == (2,))
        if not ok:
            want = f"(batch, {n_outputs})" + (" or (batch,)" if self.task == "regression" else "")
            raise UsageError(
                f"train.model: {reference_of(self.module)} returns shape {shape} for 2 rows of "
                f"{n_features} features; expected {want}",
                hint="use the n_features and n_outputs arguments to size the module",
            )

    def fit(self, X: Any, y: Any) -> TorchEstimator:  # noqa: N803
        """Train on ``(X, y)``; deterministic for a given ``random_state``. Returns self."""
        torch = torch_module()
        self.validate_params()
        names, values = as_matrix(X)
        y_arr = np.asarray(y)
        if len(values) != len(y_arr) or len(values) == 0:
            raise ValueError(f"X has {len(values)} rows and y {len(y_arr)}")
        n_features = values.shape[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: its median is NaN -> 0
            median = np.nan_to_num(np.nanmedian(values, axis=0), nan=0.0)
        filled = np.where(np.isnan(values), median, values)
        mean = filled.mean(axis=0)
        scale = filled.std(axis=0)
        scale[~(scale > 0)] = 1.0
        if self.task == "classification":
            labels, target = np.unique(y_arr, return_inverse=True)
            classes: list[Any] | None = json.loads(json.dumps(labels.tolist()))
            n_outputs = len(labels)
            y_t = torch.from_numpy(target.astype(np.int64))
            y_mean, y_scale = 0.0, 1.0
        else:
            values_y = y_arr.astype(np.float64)
            classes, n_outputs = None, 1
            y_mean, y_scale = float(values_y.mean()), float(values_y.std()) or 1.0
            y_t = torch.from_numpy(((values_y - y_mean) / y_scale).astype(np.float32))
        x_t = torch.from_numpy(((filled - mean) / scale).astype(np.float32))
        seed = self.random_state if self.random_state is not None else int(np.random.default_rng().integers(2**31))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net, kwargs = self._build(torch, n_features, n_outputs)
            self._check_output(torch, net, n_features, n_outputs)
            self.loss_curve_ = self._train(torch, net, x_t, y_t, int(seed))
        net.eval()
        scaling = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in (median, mean, scale)]
        head = scaled_head(torch)(net, *scaling, self.task == "classification", y_mean, y_scale).eval()
        self.model_ = TorchModel(
            module=head,
            task=self.task,
            classes=classes,
            feature_names=names,
            n_features=n_features,
            reference=reference_of(self.module),
            module_kwargs=kwargs,
        )
        self.classes_ = self.model_.classes_
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = self.model_.feature_names_in_
        return self

    def _train(self, torch: Any, net: Any, x: Any, y: Any, seed: int) -> list[float]:
        loss_fn = torch.nn.functional.cross_entropy if self.task == "classification" else torch.nn.functional.mse_loss
        optimizer = AdamW(torch, net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        generator = torch.Generator().manual_seed(seed)
        batch = int(self.batch_size)
        curve: list[float] = []
        net.train()
        for epoch in range(int(self.epochs)):
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for start in range(0, len(x), batch):
                idx = order[start : start + batch]
                optimizer.zero_grad()
                out = net(x[idx])
                if self.task == "regression":
                    out = out.reshape(-1)
                loss = loss_fn(out, y[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            curve.append(total / len(x))
            if not math.isfinite(curve[-1]):
                raise TrainingDiverged(
                    f"torch model training diverged: the loss is {curve[-1]} at epoch {epoch + 1}",
                    hint="lower train.params.lr or check the data for extreme values",
                )
        return curve

    # -- prediction -----------------------------------------------------------------------------
    def _fitted(self) -> TorchModel:
        model = getattr(self, "model_", None)
        if model is None:
            raise ValueError("this TorchEstimator is not fitted yet; call fit first")
        return model

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return self._fitted().predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        return self._fitted().predict_proba(X)


def build_torch_estimator(
    reference: str,
    task: str,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    root: Path | None = None,
) -> TorchEstimator:
    """An unfitted :class:`TorchEstimator` for the ``module:function`` ``reference``.

    Unknown parameters raise :class:`ConfigError` listing the valid ones; values are checked.
    """
    from mlctl.lifecycle.estimators import import_attr

    factory = import_attr(reference, root)
    if not callable(factory):
        raise ConfigError(
            f"train.model: '{reference}' is not callable", hint="name a function returning a torch.nn.Module"
        )
    params = dict(params or {})
    accepted = accepted_module_params(factory)
    valid = set(PARAMS)
    if accepted is not None:
        valid |= {f"{MODULE_PREFIX}{n}" for n in accepted}
    unknown = sorted(k for k in params if k not in valid and not (accepted is None and k.startswith(MODULE_PREFIX)))
    if unknown:
        raise ConfigError(
            f"train.params: unknown parameter(s) {', '.join(unknown)} for model 'torch:{reference}'",
            hint=f"valid parameters: {', '.join(sorted(valid))}",
        )
    if seed is not None and "random_state" not in params:
        params["random_state"] = seed
    est = TorchEstimator(module=factory, task=task)
    est.set_params(**params)
    est.validate_params()
    return est
