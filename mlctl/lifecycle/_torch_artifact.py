"""The torch model file: weights as a ``state_dict`` plus the reference of the function that builds
the network, one file, the same bytes for the same model, loaded without running pickled code.

``model.pt`` is written with ``torch.save`` (a zip archive with fixed entry dates) of a plain dict:

* ``"mlctl"``: the metadata as canonical JSON (sorted keys): ``format`` (``state_dict``),
  ``format_version``, ``module`` (the ``module:function`` that builds the network), ``module_kwargs``
  (the keyword arguments it was called with: sizes and ``module__<name>`` parameters), ``task``,
  ``classes``, ``feature_names``, ``n_features``, ``y_mean``/``y_scale`` (regression target
  scaling), ``torch_version`` and ``module_source``: the source text of the function's module file
  (``name``, ``file``: its path relative to the Python path, ``text``, ``sha256`` of the text), so
  the file is self-contained; absent (with a warning at save) when that module has no readable
  source file;
* ``"state_dict"``: the tensors of the network and of its input scaling (training medians, means,
  scales), in the module's own order.

Nothing in it depends on the process or the machine (no ids, no times, no absolute paths, no
hash-ordered sets), so the same trained model gives the same bytes and the same SHA-256 in every
process. :func:`load_torch_model` reads the file once, checks the SHA-256 recorded at registration
(which covers the embedded source too: nothing from the file runs before that check), opens the
bytes with ``torch.load(weights_only=True)`` (tensors and plain containers only: no pickled code
runs), rebuilds the network by calling the recorded function with the recorded arguments, and loads
the weights into it (strictly: a function that now builds another network is refused). The function
is imported by name, as for training; where its module is not installed (a Docker or Kubernetes
image holds no project code), the module is built from the embedded source instead. Only that one
file travels: a module that imports other project modules needs them installed where it loads.

Files written by an older mlctl are TorchScript archives; they still load, through ``torch.jit``
(deprecated in torch 2.13), with a warning that asks to train the model again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import inspect
import io
import json
import linecache
import logging
import posixpath
import sys
import threading
import types
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlctl.core.errors import ConfigError, OperationFailed, require

__all__ = [
    "FLAVOR",
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "TorchModel",
    "as_matrix",
    "load_torch_model",
    "module_source",
    "reference_of",
    "scaled_head",
    "torch_module",
]

FLAVOR = "torch"
MODEL_FILE = "model.pt"
FORMAT = "state_dict"
FORMAT_VERSION = 2  # 1: TorchScript (mlctl before the state_dict format), still loaded
LEGACY_FORMAT = "torchscript"
META_KEY = "mlctl"
LEGACY_META_FILE = "mlctl.json"  # the extra file inside a TorchScript archive
SOURCE_KEY = "module_source"  # the metadata entry with the source of the network's module
EMBEDDED_ATTR = "__mlctl_source__"  # set on a module built from a file's embedded source

log = logging.getLogger("mlctl.torch")
_BUILDING = threading.RLock()  # one module built from a file's source at a time (sys.modules is shared)


def torch_module() -> Any:
    """``torch``, or :class:`~mlctl.core.errors.MissingExtra` naming the extra to install."""
    return require("torch", "torch", feature="torch models")


def reference_of(module: Any) -> str:
    """``package.module:name`` of a function (or the string itself)."""
    if isinstance(module, str):
        return module
    return f"{getattr(module, '__module__', '?')}:{getattr(module, '__qualname__', repr(module))}"


def as_matrix(X: Any, expected: list[str] | None = None) -> tuple[list[str] | None, np.ndarray]:  # noqa: N803
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


@functools.cache
def scaled_head(torch: Any) -> type:
    """The module class around the user's network: fill gaps, standardise, run it, then softmax
    (classification) or undo the target scaling (regression). Defined once torch is imported."""

    class ScaledHead(torch.nn.Module):
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


class TorchModel:
    """A fitted torch model: the network with its scaling, and what rebuilds it; predicts like an
    estimator. ``reference`` and ``module_kwargs`` are the function that built the network and its
    arguments (None for a TorchScript model of an older mlctl, which cannot be saved again);
    ``module_source`` the source of the function's module that the file embeds (read from the
    module's file when first needed, for a model just trained; the file's own, for a loaded one)."""

    mlctl_flavor = FLAVOR

    def __init__(
        self,
        *,
        module: Any,
        task: str,
        classes: list[Any] | None,
        feature_names: list[str] | None,
        n_features: int,
        reference: str | None = None,
        module_kwargs: Mapping[str, Any] | None = None,
        module_source: Mapping[str, str] | None = None,
    ) -> None:
        self.module = module
        self.task = task
        self.classes_ = None if classes is None else np.asarray(classes)
        self.feature_names_in_ = None if feature_names is None else np.asarray(feature_names, dtype=object)
        self.n_features_in_ = n_features
        self.reference = reference
        self.module_kwargs: dict[str, Any] = dict(module_kwargs or {})
        self.module_source: dict[str, str] | None = None if module_source is None else dict(module_source)
        self._source_looked_up = module_source is not None

    # -- prediction ---------------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:  # noqa: N803
        torch = torch_module()
        expected = None if self.feature_names_in_ is None else [str(n) for n in self.feature_names_in_]
        _, values = as_matrix(X, expected)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {values.shape[1]}")
        with torch.inference_mode():
            out = self.module(torch.from_numpy(values.astype(np.float32)))
        return np.asarray(out.numpy(), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Class labels (classification) or values (regression), one per row."""
        out = self._forward(X)
        if self.task == "regression":
            return out
        assert self.classes_ is not None
        return np.asarray(self.classes_[np.argmax(out, axis=1)])

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Class probabilities, columns in ``classes_`` order (classification only)."""
        if self.task != "classification":
            raise AttributeError("predict_proba is only available for classification models")
        return self._forward(X)

    # -- files ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What travels in the file's ``mlctl`` entry (and in the MLmodel file's torch flavor)."""
        torch = torch_module()
        legacy = self.reference is None
        meta: dict[str, Any] = {
            "format": LEGACY_FORMAT if legacy else FORMAT,
            "format_version": 1 if legacy else FORMAT_VERSION,
            "task": self.task,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "feature_names": None if self.feature_names_in_ is None else [str(n) for n in self.feature_names_in_],
            "n_features": int(self.n_features_in_),
            "torch_version": torch.__version__.split("+")[0],
        }
        if not legacy:
            meta["module"] = self.reference
            meta["module_kwargs"] = self.module_kwargs
            meta["y_mean"] = float(getattr(self.module, "y_mean", 0.0))
            meta["y_scale"] = float(getattr(self.module, "y_scale", 1.0))
            source = self._embedded_source()
            if source is not None:
                meta[SOURCE_KEY] = source
        return meta

    def _embedded_source(self) -> dict[str, str] | None:
        """The module source the file embeds, read once (a warning says when there is none)."""
        if not self._source_looked_up and self.reference is not None:
            self._source_looked_up = True
            self.module_source = module_source(self.reference)
        return self.module_source

    def to_bytes(self) -> bytes:
        """The file's bytes: ``torch.save`` of the metadata (canonical JSON) and the ``state_dict``."""
        torch = torch_module()
        if self.reference is None:
            raise OperationFailed(
                "this torch model was loaded from a TorchScript file of an older mlctl and cannot be saved again",
                hint="train the model again (mlctl train) to save it in the current format",
            )
        _check_reference(self.reference)
        try:
            meta = json.dumps(self.metadata(), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise OperationFailed(
                f"cannot save the torch model: its module__ parameters are not plain JSON values ({exc})",
                hint="pass numbers, strings, booleans, lists or mappings as module__<name> parameters",
            ) from exc
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        buf = io.BytesIO()  # not a path: the archive's folder name would follow the file name
        torch.save({META_KEY: meta, "state_dict": state}, buf)
        return buf.getvalue()

    def save(self, path: Path) -> str:
        """Write the file to ``path`` (atomically) and return its SHA-256."""
        from mlctl.lifecycle.serialize import write_atomically

        return write_atomically(Path(path), self.to_bytes())


def _check_reference(reference: str) -> None:
    module_name, _, name = reference.partition(":")
    if not module_name or not name.isidentifier() or module_name == "__main__":
        raise OperationFailed(
            f"cannot save the torch model: the function that builds its network ({reference}) cannot be imported "
            "by name, so the model could not be loaded again",
            hint="define the function at the top level of an importable module (train.model: torch:module:function)",
        )


def module_source(reference: str) -> dict[str, str] | None:
    """The source of the module that defines ``reference``'s function, as the file embeds it:
    ``name``, ``file`` (its path relative to the Python path, the same on every machine), ``text``
    (decoded as Python decodes it, newlines normalised) and ``sha256`` (of the text as UTF-8).

    Only that one file. None, with a :class:`UserWarning` naming the consequence, when the module
    has no readable source file (a compiled extension, a module made in memory).
    """
    name = reference.partition(":")[0]
    module = sys.modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(name)
        except Exception:  # reported below: there is no source to read
            module = None
    embedded = getattr(module, EMBEDDED_ATTR, None)
    if isinstance(embedded, dict):  # itself built from a model file's source: pass it on
        return dict(embedded)
    file: str | None
    try:
        file = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # a built-in module, or one made in memory without __file__
        file = None
    why = "it has no Python source file"
    text = None
    if file:
        try:
            text = importlib.util.decode_source(Path(file).read_bytes())
        except (OSError, SyntaxError, UnicodeDecodeError) as exc:
            why = f"cannot read {file}: {exc}"
    if text is None:
        warnings.warn(
            f"the torch model is saved without the source of {name} ({why}): it loads only where {name} "
            "is importable, so Docker and Kubernetes images cannot load it",
            UserWarning,
            stacklevel=2,
        )
        return None
    relative = name.replace(".", "/") + ("/__init__.py" if Path(file or "").name == "__init__.py" else ".py")
    return {"name": name, "file": relative, "text": text, "sha256": _text_sha256(text)}


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_torch_model(path: Path, *, sha256: str, root: Path | None = None) -> TorchModel:
    """The model in ``path``, opened only after its SHA-256 matches ``sha256``.

    ``root`` goes on the Python path while the network's function is imported (default: the
    current folder, the project root where mlctl runs models). Where its module is not installed,
    the module is built from the source the file embeds (see :func:`module_source`). Raises
    :class:`~mlctl.lifecycle.serialize.ArtifactTampered` on a mismatch (nothing is opened) and
    :class:`OperationFailed` when the file is not a model written by mlctl or the network cannot be
    rebuilt from it.
    """
    from mlctl.lifecycle.serialize import read_verified

    path = Path(path)
    data = read_verified(path, sha256)
    torch = torch_module()
    if _is_torchscript(data):
        return _load_torchscript(torch, path, data)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/... for foreign files
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise OperationFailed(f"{path} is not a torch model file written by mlctl: {first}") from exc
    meta = _metadata(path, payload)
    factory = _import_factory(path, str(meta["module"]), root, meta.get(SOURCE_KEY))
    kwargs = meta.get("module_kwargs") or {}
    n_features = int(meta["n_features"])
    with torch.random.fork_rng(devices=[]):  # building the network draws initial weights: leave the caller's RNG be
        try:
            net = factory(**kwargs)
        except Exception as exc:
            raise OperationFailed(
                f"{path}: rebuilding the network with {meta['module']}(**{kwargs}) failed: {exc}",
                hint="the function that built the network must still accept the arguments it was trained with",
            ) from exc
    zeros, ones = torch.zeros(n_features), torch.ones(n_features)
    head = scaled_head(torch)(
        net, zeros, zeros.clone(), ones, meta["task"] == "classification", float(meta["y_mean"]), float(meta["y_scale"])
    )
    try:
        # assign: the loaded tensors become the weights (no copy into the freshly initialised ones)
        head.load_state_dict(payload["state_dict"], strict=True, assign=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise OperationFailed(
            f"{path}: the weights do not fit the network that {meta['module']} builds now: {str(exc).splitlines()[0]}",
            hint="the function changed since the model was trained: restore it, or train the model again",
        ) from exc
    head.eval()
    model = TorchModel(
        module=head,
        task=meta["task"],
        classes=meta.get("classes"),
        feature_names=meta.get("feature_names"),
        n_features=n_features,
        reference=str(meta["module"]),
        module_kwargs=kwargs,
        module_source=meta.get(SOURCE_KEY),
    )
    model._source_looked_up = True  # the file's own record, even without a source: saved again as it was
    return model


def _metadata(path: Path, payload: Any) -> dict[str, Any]:
    """The checked metadata of a loaded payload."""
    raw = payload.get(META_KEY) if isinstance(payload, dict) else None
    try:
        meta = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        meta = None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or meta.get("task") not in ("classification", "regression")
        or not isinstance(payload.get("state_dict"), dict)
    ):
        raise OperationFailed(
            f"{path} has no mlctl metadata: not a torch model saved by mlctl",
            hint="register torch models with `mlctl train` (train.model: torch:module:function)",
        )
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise OperationFailed(
            f"{path} was written by a newer mlctl (format {meta['format_version']})", hint="upgrade mlctl to load it"
        )
    return meta


def _import_factory(path: Path, reference: str, root: Path | None, source: Any) -> Any:
    """The network's function: imported by name; built from the embedded ``source`` when that
    module (or its package) is not installed, or was itself built from a file's source."""
    from mlctl.lifecycle.estimators import import_attr

    module_name = reference.partition(":")[0]
    if source is not None and hasattr(sys.modules.get(module_name), EMBEDDED_ATTR):
        factory = _attr_of(path, reference, _module_from_source(path, module_name, source))
    else:
        try:
            factory = import_attr(reference, Path.cwd() if root is None else root)
            log.debug("%s: the network's function %s is imported from the installed module", path, reference)
        except ConfigError as exc:
            missing = exc.__cause__.name if isinstance(exc.__cause__, ModuleNotFoundError) else None
            ours = missing is not None and (module_name == missing or module_name.startswith(f"{missing}."))
            if source is None or not ours:
                raise OperationFailed(
                    f"{path}: cannot import {reference}, the function that builds the model's network: "
                    f"{exc.message.removeprefix('train.model: ')}",
                    hint="a torch model is loaded by rebuilding its network: load it where that module is "
                    "importable (from the project root, or with the module installed)"
                    + ("" if source is not None else "; this file does not carry the module's source"),
                ) from exc
            factory = _attr_of(path, reference, _module_from_source(path, module_name, source))
    if not callable(factory):
        raise OperationFailed(f"{path}: {reference} is not callable")
    return factory


def _attr_of(path: Path, reference: str, module: types.ModuleType) -> Any:
    module_name, _, attr = reference.partition(":")
    try:
        return getattr(module, attr)
    except AttributeError:
        raise OperationFailed(
            f"{path}: cannot import {reference}: the source of {module_name} embedded in the file has no '{attr}'"
        ) from None


def _module_from_source(path: Path, name: str, source: Any) -> types.ModuleType:
    """The module ``name`` built from the source embedded in ``path`` (already SHA-256 checked).

    Missing parent packages become empty namespace modules; the code is compiled with the recorded
    file name (and its lines registered with :mod:`linecache`) so tracebacks read as usual. The
    module is registered in ``sys.modules``, marked with its source: a model embedding the same
    source reuses it, one embedding another builds its own.
    """
    with _BUILDING:
        return _build_module(path, name, source)


def _build_module(path: Path, name: str, source: Any) -> types.ModuleType:
    text = source.get("text") if isinstance(source, dict) else None
    file = source.get("file") if isinstance(source, dict) else None
    if (
        not isinstance(text, str)
        or not isinstance(file, str)
        or source.get("name") != name
        or source.get("sha256") != _text_sha256(text)
    ):
        raise OperationFailed(
            f"{path}: the source of {name} embedded in the file does not match its record",
            hint="the file was not written by mlctl as it is: train the model again",
        )
    current = sys.modules.get(name)
    built_from = getattr(current, EMBEDDED_ATTR, None)
    if current is not None and isinstance(built_from, dict) and built_from.get("sha256") == source["sha256"]:
        log.debug("%s: the network's function is taken from %s, built earlier from the same source", path, name)
        return current
    is_package = posixpath.basename(file) == "__init__.py"
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, origin=file, is_package=is_package)
    module.__file__ = file
    module.__package__ = name if is_package else name.rpartition(".")[0]
    if is_package:
        module.__path__ = []
    setattr(module, EMBEDDED_ATTR, dict(source))
    added: list[str] = []
    links: list[tuple[types.ModuleType, str, types.ModuleType]] = []  # parent, name, child: set on success
    parts = name.split(".")
    parent: types.ModuleType | None = None
    try:
        for i in range(1, len(parts)):
            package_name = ".".join(parts[:i])
            package = sys.modules.get(package_name)
            if package is None:  # an empty namespace package, as Python makes for a folder without __init__
                package = types.ModuleType(package_name)
                package.__spec__ = importlib.machinery.ModuleSpec(package_name, None, is_package=True)
                package.__path__ = []
                package.__package__ = package_name
                sys.modules[package_name] = package
                added.append(package_name)
                if parent is not None:
                    links.append((parent, parts[i - 1], package))
            parent = package
        if parent is not None:
            links.append((parent, parts[-1], module))
        code = compile(text, file, "exec", dont_inherit=True)
        linecache.cache[file] = (len(text), None, text.splitlines(True), file)
        sys.modules[name] = module
        exec(code, module.__dict__)
    except Exception as exc:
        if current is not None:
            sys.modules[name] = current
        else:
            sys.modules.pop(name, None)
        for package_name in reversed(added):
            sys.modules.pop(package_name, None)
        first = (str(exc).splitlines() or [""])[0]
        if isinstance(exc, ModuleNotFoundError):
            raise OperationFailed(
                f"{path}: the source of {name} embedded in the file imports {exc.name}, which is not installed here",
                hint="only the network's own module travels with the model: install the modules it imports where "
                "the model is loaded, or keep the network's code in that one module and train again",
            ) from exc
        raise OperationFailed(
            f"{path}: running the source of {name} embedded in the file failed: {type(exc).__name__}: {first}",
            hint="the network's module must import cleanly here (the same Python and torch as for training)",
        ) from exc
    for owner, attr, child in links:
        setattr(owner, attr, child)
    log.debug("%s: %s is not installed here; built it from the source the file embeds (%s)", path, name, file)
    return module


# --------------------------------------------------------------------------- TorchScript (older mlctl)


def _is_torchscript(data: bytes) -> bool:
    """Whether ``data`` is a TorchScript archive (a ``torch.save`` archive has no constants or code)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith(("/constants.pkl", f"/extra/{LEGACY_META_FILE}")) for n in names)


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """torch 2.13 marks the TorchScript API deprecated on every call; mlctl's own warning says it once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def _load_torchscript(torch: Any, path: Path, data: bytes) -> TorchModel:
    """A TorchScript model file of an older mlctl (metadata as the extra file ``mlctl.json``)."""
    extra = {LEGACY_META_FILE: ""}
    try:
        with quiet_jit():
            module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[LEGACY_META_FILE] or "null")
    except Exception as exc:  # torch raises RuntimeError/ValueError for damaged archives
        raise OperationFailed(f"{path} is not a TorchScript model: {str(exc).splitlines()[0]}") from exc
    if (
        not isinstance(meta, dict)
        or meta.get("format") != LEGACY_FORMAT
        or meta.get("task") not in ("classification", "regression")
    ):
        raise OperationFailed(
            f"{path} has no mlctl metadata ({LEGACY_META_FILE}): not a model saved by mlctl",
            hint="register torch models with `mlctl train` (train.model: torch:module:function)",
        )
    warnings.warn(
        f"{path} is a TorchScript model saved by an older mlctl; TorchScript is deprecated in torch 2.13 and "
        "mlctl will stop loading it: train the model again to save it as a state_dict",
        FutureWarning,
        stacklevel=4,
    )
    module.eval()
    return TorchModel(
        module=module,
        task=meta["task"],
        classes=meta.get("classes"),
        feature_names=meta.get("feature_names"),
        n_features=int(meta["n_features"]),
    )
