"""Torch models behind the scikit-learn estimator interface, saved as TorchScript.

A ``train.model`` of the form ``torch:package.module:function`` names a function that builds a
``torch.nn.Module``. The function is called with keyword arguments ``n_features`` and
``n_outputs`` (when it accepts them) plus any ``module__<name>`` parameters of ``train.params``;
the module takes a float tensor ``(batch, n_features)`` and returns logits ``(batch, n_classes)``
for classification or values ``(batch,)`` / ``(batch, 1)`` for regression.

:class:`TorchEstimator` wraps it so cross-validation, metrics, gates and tuning treat it like any
scikit-learn estimator: ``fit`` imputes missing numbers (training medians), standardises inputs
(and the target, for regression) and trains on the CPU with AdamW on seeded mini-batches, so the
same data, parameters and seed give the same model; ``predict`` / ``predict_proba`` run the
fitted :class:`TorchScriptModel`.

:class:`TorchScriptModel` is the network with its input scaling and output head compiled into one
TorchScript module (the user's network is scripted, or traced when it cannot be scripted). It is
saved with ``torch.jit.save`` (no pickle); its metadata (task, classes, feature names) travels
inside the same archive as the extra file ``mlctl.json``, so the SHA-256 of the one file covers
both. :func:`load_torch_model` verifies that SHA-256 before ``torch.jit.load`` opens the file.

Training parameters (``train.params``): ``epochs``, ``lr``, ``batch_size``, ``weight_decay``,
``random_state`` (set to ``train.seed`` unless given), and ``module__<name>`` for the function.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlctl.core.errors import ConfigError, OperationFailed, UsageError, require

FLAVOR = "torch"
MODEL_FILE = "model.pt"
META_FILE = "mlctl.json"  # extra file inside the TorchScript archive
FORMAT_VERSION = 1
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


def _torch() -> Any:
    return require("torch", "torch", feature="torch models")


def _reference(module: Any) -> str:
    if isinstance(module, str):
        return module
    return f"{getattr(module, '__module__', '?')}:{getattr(module, '__qualname__', repr(module))}"


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


def _as_matrix(X: Any, expected: list[str] | None = None) -> tuple[list[str] | None, np.ndarray]:  # noqa: N803
    """Feature names (for a DataFrame) and the values as float64; text columns are refused."""
    columns = getattr(X, "columns", None)
    if columns is None:
        try:
            return None, np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"torch models take numeric inputs: {exc}") from None
    from pandas.api import types as pt

    names = [str(c) for c in columns]
    if expected is not None and names != expected:
        missing = sorted(set(expected) - set(names))
        if missing:
            raise ValueError(f"missing feature column(s): {', '.join(missing)}")
        X = X[expected]  # noqa: N806 - the fitted order
        names = list(expected)
    text = [str(c) for c in X.columns if not (pt.is_numeric_dtype(X[c]) or pt.is_bool_dtype(X[c]))]
    if text:
        raise ConfigError(
            f"train.features: torch models take numeric inputs; not numeric: {', '.join(text)}",
            hint="leave these columns out with train.features, or encode them as numbers first",
        )
    return names, X.to_numpy(dtype=np.float64, na_value=np.nan)


class TorchScriptModel:
    """A fitted torch model as one TorchScript module plus its metadata; predicts like an estimator."""

    mlctl_flavor = FLAVOR

    def __init__(
        self, *, module: Any, task: str, classes: list[Any] | None, feature_names: list[str] | None, n_features: int
    ) -> None:
        self.module = module
        self.task = task
        self.classes_ = None if classes is None else np.asarray(classes)
        self.feature_names_in_ = None if feature_names is None else np.asarray(feature_names, dtype=object)
        self.n_features_in_ = n_features

    # -- prediction ---------------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:  # noqa: N803
        torch = _torch()
        expected = None if self.feature_names_in_ is None else [str(n) for n in self.feature_names_in_]
        _, values = _as_matrix(X, expected)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {values.shape[1]}")
        with torch.inference_mode():
            out = self.module(torch.from_numpy(values.astype(np.float32)))
        return out.numpy().astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Class labels (classification) or values (regression), one per row."""
        out = self._forward(X)
        if self.task == "regression":
            return out
        assert self.classes_ is not None
        return self.classes_[np.argmax(out, axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Class probabilities, columns in ``classes_`` order (classification only)."""
        if self.task != "classification":
            raise AttributeError("predict_proba is only available for classification models")
        return self._forward(X)

    # -- files ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What travels in the archive's ``mlctl.json`` (and in the MLmodel file's torch flavor)."""
        torch = _torch()
        return {
            "format": "torchscript",
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "feature_names": None if self.feature_names_in_ is None else [str(n) for n in self.feature_names_in_],
            "n_features": int(self.n_features_in_),
            "torch_version": torch.__version__.split("+")[0],
        }

    def to_bytes(self) -> bytes:
        """The TorchScript archive with the metadata inside."""
        torch = _torch()
        buf = io.BytesIO()
        with _quiet_jit():
            torch.jit.save(self.module, buf, _extra_files={META_FILE: json.dumps(self.metadata(), sort_keys=True)})
        return buf.getvalue()

    def save(self, path: Path) -> str:
        """Write the archive to ``path`` (atomically) and return its SHA-256."""
        from mlctl.lifecycle.serialize import write_atomically

        return write_atomically(Path(path), self.to_bytes())


def load_torch_model(path: Path, *, sha256: str) -> TorchScriptModel:
    """The model in ``path``, opened only after its SHA-256 matches ``sha256``.

    Raises :class:`~mlctl.lifecycle.serialize.ArtifactTampered` on a mismatch (the file is not
    opened) and :class:`OperationFailed` when it is not an archive written by mlctl.
    """
    from mlctl.lifecycle.serialize import verify_sha256

    path = Path(path)
    verify_sha256(path, sha256)
    torch = _torch()
    extra = {META_FILE: ""}
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[META_FILE] or "null")
    except Exception as exc:  # torch raises RuntimeError/ValueError for foreign files
        raise OperationFailed(f"{path} is not a TorchScript model: {str(exc).splitlines()[0]}") from exc
    if (
        not isinstance(meta, dict)
        or meta.get("format") != "torchscript"
        or meta.get("task") not in ("classification", "regression")
    ):
        raise OperationFailed(
            f"{path} has no mlctl metadata ({META_FILE}): not a model saved by mlctl",
            hint="register torch models with `mlctl train` (train.model: torch:module:function)",
        )
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise OperationFailed(
            f"{path} was written by a newer mlctl (format {meta['format_version']})", hint="upgrade mlctl to load it"
        )
    module.eval()
    return TorchScriptModel(
        module=module,
        task=meta["task"],
        classes=meta.get("classes"),
        feature_names=meta.get("feature_names"),
        n_features=int(meta["n_features"]),
    )


class TorchEstimator:
    """A scikit-learn compatible estimator training the ``torch.nn.Module`` that ``module`` builds.

    ``module`` is the function (or its ``package.module:function`` reference, imported at fit).
    Parameters follow :data:`PARAMS`; ``module__<name>=value`` go to the function. Learned
    attributes: ``model_`` (a :class:`TorchScriptModel`), ``classes_``, ``n_features_in_``,
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
        return f"TorchEstimator(module={_reference(self.module)}, {shown})"

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
            from mlctl.lifecycle.estimators import _import_attr

            return _import_attr(self.module, None)  # type: ignore[no-any-return]
        return self.module

    def _build(self, torch: Any, n_features: int, n_outputs: int) -> Any:
        factory = self._factory()
        names, var_kw = _keywords(factory)
        kwargs = dict(self.module_params)
        sizes = {"n_features": n_features, "n_outputs": n_outputs}
        kwargs.update({k: v for k, v in sizes.items() if var_kw or k in names})
        try:
            net = factory(**kwargs)
        except TypeError as exc:
            raise ConfigError(
                f"train.model: calling {_reference(self.module)} failed: {exc}",
                hint="the function takes n_features, n_outputs and the module__<name> params",
            ) from exc
        if not isinstance(net, torch.nn.Module):
            raise UsageError(
                f"train.model: {_reference(self.module)} returned {type(net).__name__}, not a torch.nn.Module",
                hint="return a torch.nn.Module mapping a float tensor (batch, n_features) to logits "
                "(classification) or values (regression)",
            )
        return net

    def _check_output(self, torch: Any, net: Any, n_features: int, n_outputs: int) -> None:
        with torch.no_grad():
            out = net(torch.zeros(2, n_features))
        shape = tuple(getattr(out, "shape", ()))
        ok = shape == (2, n_outputs) or (self.task == "regression" and shape == (2,))
        if not ok:
            want = f"(batch, {n_outputs})" + (" or (batch,)" if self.task == "regression" else "")
            raise UsageError(
                f"train.model: {_reference(self.module)} returns shape {shape} for 2 rows of "
                f"{n_features} features; expected {want}",
                hint="use the n_features and n_outputs arguments to size the module",
            )

    def fit(self, X: Any, y: Any) -> TorchEstimator:  # noqa: N803
        """Train on ``(X, y)``; deterministic for a given ``random_state``. Returns self."""
        torch = _torch()
        self.validate_params()
        names, values = _as_matrix(X)
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
            net = self._build(torch, n_features, n_outputs)
            self._check_output(torch, net, n_features, n_outputs)
            self.loss_curve_ = self._train(torch, net, x_t, y_t, int(seed))
        net.eval()
        consts = {
            k: torch.from_numpy(np.asarray(v, dtype=np.float32))
            for k, v in {"median": median, "mean": mean, "scale": scale}.items()
        }
        scripted = compile_module(
            torch, net, consts, task=self.task, y_mean=y_mean, y_scale=y_scale, example=x_t[: min(len(x_t), 8)]
        )
        self.model_ = TorchScriptModel(
            module=scripted, task=self.task, classes=classes, feature_names=names, n_features=n_features
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
    def _fitted(self) -> TorchScriptModel:
        model = getattr(self, "model_", None)
        if model is None:
            raise ValueError("this TorchEstimator is not fitted yet; call fit first")
        return model

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return self._fitted().predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        return self._fitted().predict_proba(X)


class AdamW:
    """AdamW (Adam with decoupled weight decay), the arithmetic of ``torch.optim.AdamW``'s default
    single-tensor path, written out because ``torch.optim``'s constructor imports torch's compiler
    stack: seconds of start-up for every training process that this small CPU loop never uses."""

    def __init__(
        self,
        torch: Any,
        params: Any,
        *,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.torch = torch
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        with self.torch.no_grad():
            for p, avg, avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
                if p.grad is None:
                    continue
                grad = p.grad
                p.mul_(1 - self.lr * self.weight_decay)
                avg.lerp_(grad, 1 - beta1)
                avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
                p.addcdiv_(avg, denom, value=-self.lr / correction1)


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch 2.13 marks the TorchScript API deprecated on every call; mlctl's use is deliberate."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def compile_module(
    torch: Any, net: Any, consts: Mapping[str, Any], *, task: str, y_mean: float, y_scale: float, example: Any
) -> Any:
    """One TorchScript module: fill gaps, standardise, run ``net``, then softmax or unscale.

    ``net`` is scripted when TorchScript can compile it, else traced on ``example``; the wrapper
    around it is traced (it has no data-dependent branches), then checked against the eager one.
    """
    with _quiet_jit(), torch.no_grad():
        try:
            inner = torch.jit.script(net)
        except Exception:  # not scriptable (dynamic Python): record its operations instead
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # tracer warnings about Python values
                    inner = torch.jit.trace(net, example)
            except Exception as exc:
                raise OperationFailed(
                    f"cannot compile the torch model to TorchScript: {exc}",
                    hint="write the module so torch.jit.script or torch.jit.trace accepts it",
                ) from exc
        scaling = (consts["median"], consts["mean"], consts["scale"])
        head = _head(torch)(inner, *scaling, task == "classification", y_mean, y_scale).eval()
        traced = torch.jit.trace(head, example, check_trace=False)
        if not torch.allclose(traced(example), head(example), rtol=1e-5, atol=1e-6, equal_nan=True):
            raise OperationFailed(
                "the compiled torch model does not reproduce the trained one",
                hint="avoid data-dependent Python control flow in the module, or make it scriptable",
            )
    return traced


@functools.cache
def _head(torch: Any) -> type:
    """The wrapper module class (defined once torch is imported)."""

    class ScaledHead(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(
            self, net: Any, median: Any, mean: Any, scale: Any, classification: bool, y_mean: float, y_scale: float
        ) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("median", median)
            self.register_buffer("mean", mean)
            self.register_buffer("scale", scale)
            self.classification = classification
            self.y_mean = y_mean
            self.y_scale = y_scale

        def forward(self, x: Any) -> Any:
            x = torch.where(torch.isnan(x), self.median, x)
            out = self.net((x - self.mean) / self.scale)
            if self.classification:
                return torch.softmax(out, dim=1)
            return out.reshape(-1) * self.y_scale + self.y_mean

    return ScaledHead


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
    from mlctl.lifecycle.estimators import _import_attr

    factory = _import_attr(reference, root)
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
