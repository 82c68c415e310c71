"""Safe model files: skops for scikit-learn, explicit trusted types, SHA-256 verified at every load.

No pickle. A scikit-learn model is written with ``skops.io``; skops refuses, at load, every type
outside the list it is given, so the list is explicit and never "trust everything":

* at save, the types the file needs beyond skops' own safe set are derived from the estimator
  that was built (:func:`allowed_types`: a small fixed list of scikit-learn and numpy internals
  the built-in models use, plus the classes found by walking the estimator's own objects); a file
  that would need anything else is not written;
* at load, the file's SHA-256 is checked first against the one recorded at registration (a
  mismatch raises :class:`ArtifactTampered` and skops never opens the file); then every type the
  file needs must be in :data:`TRUSTED_BASE` or in the ``skops_trusted_types`` recorded in the
  ``MLmodel`` file beside it; anything else is refused.

MLflow layout (see :func:`save_mlflow_model`): an MLflow model folder with the ``sklearn`` and
``python_function`` flavors, ``serialization_format: skops`` and ``skops_trusted_types`` in its
``MLmodel`` file, so ``mlflow models serve`` can serve it too.

Torch models (:mod:`mlctl.lifecycle.torch_model`) are one ``model.pt``: ``torch.save`` of the
weights (a ``state_dict``) and of the metadata, including the ``module:function`` that builds the
network and its arguments; the same model always gives the same bytes, and it is opened with
``torch.load(weights_only=True)`` (no pickled code runs). Their folder's ``MLmodel`` records the
``torch`` flavor (file, format, module reference, task, classes, feature names, torch version) and
the signature. :func:`load_model` dispatches on ``artifact.flavor``; both flavors verify the file's
SHA-256 before opening it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import types
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.core.errors import OperationFailed, UsageError
from mlctl.lifecycle.artifact import ModelArtifact

MODEL_FILE = "model.skops"
TORCH_MODEL_FILE = "model.pt"
#: flavor -> the model file inside an MLflow model folder
MODEL_FILES: dict[str, str] = {"sklearn": MODEL_FILE, "torch": TORCH_MODEL_FILE}

#: Types beyond skops' default safe set that the built-in models need (checked by a test that
#: saves and loads every built-in model, plain and behind the preprocessing pipeline).
TRUSTED_BASE: frozenset[str] = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
})


class ArtifactTampered(OperationFailed):
    """A model file's SHA-256 differs from the one recorded when it was registered."""


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ArtifactTampered` unless ``path`` hashes to ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise OperationFailed(f"model file {path} does not exist",
                              hint="resolve the model again (mlctl deploy / resolve_model downloads it)")
    _check_digest(path, sha256_file(path), expected)


def read_verified(path: Path, expected: str) -> bytes:
    """The bytes of ``path``, read once and returned only when they hash to ``expected``.

    Loading from these bytes (not from the file again) leaves no window in which the file could be
    swapped between the check and the load. Raises like :func:`verify_sha256`.
    """
    path = Path(path)
    if not path.is_file():
        raise OperationFailed(f"model file {path} does not exist",
                              hint="resolve the model again (mlctl deploy / resolve_model downloads it)")
    data = path.read_bytes()
    _check_digest(path, hashlib.sha256(data).hexdigest(), expected)
    return data


def _check_digest(path: Path, actual: str, expected: str) -> None:
    if actual != expected.lower():
        raise ArtifactTampered(
            f"model file {path} has SHA-256 {actual[:16]}..., not the {expected[:16]}... recorded at "
            "registration: refusing to load it",
            hint="the file was changed after it was registered; delete it and resolve the model again, or "
                 "investigate who modified it",
            details={"path": str(path), "expected": expected, "actual": actual},
        )


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"


def _walk(obj: Any, seen: set[int], out: set[str], depth: int = 0) -> None:
    if depth > 64 or id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, complex, bool)):
        return
    seen.add(id(obj))
    import numpy as np

    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for item in obj.ravel():
                _walk(item, seen, out, depth + 1)
        return
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        out.add(_qualname(obj))  # a class or function the estimator refers to
        return
    out.add(_qualname(type(obj)))
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _walk(k, seen, out, depth + 1)
            _walk(v, seen, out, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _walk(item, seen, out, depth + 1)
    elif hasattr(obj, "__dict__"):
        for v in vars(obj).values():
            _walk(v, seen, out, depth + 1)


def allowed_types(estimator: Any) -> set[str]:
    """The types a file of ``estimator`` may need: :data:`TRUSTED_BASE` plus the estimator's own classes."""
    found: set[str] = set()
    _walk(estimator, set(), found)
    return set(TRUSTED_BASE) | found


def _dumps(estimator: Any) -> tuple[bytes, list[str]]:
    """The skops bytes of ``estimator`` and the types they need beyond skops' safe set (checked)."""
    import skops.io as sio

    try:
        data = sio.dumps(estimator)
    except Exception as exc:  # skops raises TypeError/ValueError/... for unsupported objects
        raise OperationFailed(f"cannot serialize {type(estimator).__name__} with skops: {exc}",
                              hint="use estimators built from importable, module-level classes") from exc
    data = _canonical_skops(data)
    needed = sorted(sio.get_untrusted_types(data=data))
    unexplained = sorted(set(needed) - allowed_types(estimator))
    if unexplained:
        raise OperationFailed(f"refusing to save {type(estimator).__name__}: the file would need types that are "
                              f"not part of the estimator: {', '.join(unexplained)}")
    return data, needed


_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def _canonical_skops(data: bytes) -> bytes:
    """The same skops archive with the run-dependent parts made canonical, so that the same model
    always gives the same bytes (and the same SHA-256).

    skops names objects and array files after ``id()`` and stamps each zip entry with the current
    time. Ids become their order of first appearance in the schema (a bijection, so shared
    references stay shared) and array files are renamed to match; entries are written in a fixed
    order with a fixed time and mode.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        schema = json.loads(zin.read("schema.json"))
        files = {info.filename: zin.read(info) for info in zin.infolist() if info.filename != "schema.json"}
        compression = zin.getinfo("schema.json").compress_type
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    value = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and isinstance(value, str) and value in files:
                    suffix = value.rsplit(".", 1)[1] if "." in value else "bin"
                    value = names.setdefault(value, f"{len(names) + 1}.{suffix}")
                else:
                    value = walk(value)
                out[key] = value
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    schema = walk(schema)
    unnamed = sorted(set(files) - set(names))  # files the schema does not name (none in skops 0.x)
    for name in unnamed:
        names[name] = name
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zout:
        def put(name: str, payload: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            zout.writestr(info, payload)

        put("schema.json", json.dumps(schema, indent=2, sort_keys=False).encode())
        for old_name, new_name in sorted(names.items(), key=lambda kv: kv[1]):
            put(new_name, files[old_name])
    return buf.getvalue()


def canonicalize_skops_file(path: Path) -> str:
    """Rewrite the skops file at ``path`` canonically (see :func:`_canonical_skops`); its SHA-256."""
    return write_atomically(Path(path), _canonical_skops(Path(path).read_bytes()))


def trusted_types(estimator: Any) -> list[str]:
    """The explicit list of types (beyond skops' safe set) to trust when loading ``estimator``."""
    return _dumps(estimator)[1]


def flavor_of(estimator: Any) -> str:
    """``"torch"`` for mlctl's torch estimators and models, else ``"sklearn"``."""
    return str(getattr(estimator, "mlctl_flavor", "sklearn"))


def _torch_model(estimator: Any) -> Any:
    """The fitted :class:`~mlctl.lifecycle.torch_model.TorchModel` of a torch estimator."""
    model = getattr(estimator, "model_", estimator)
    if not hasattr(model, "save"):
        raise OperationFailed(f"cannot save {type(estimator).__name__}: the torch model is not fitted")
    return model


def save_model(estimator: Any, path: Path) -> str:
    """Write ``estimator`` to ``path`` (atomically) and return the file's SHA-256.

    scikit-learn compatible estimators are written with skops; torch estimators as a state_dict
    with the reference of their network's function (:mod:`mlctl.lifecycle.torch_model`).
    """
    if flavor_of(estimator) == "torch":
        return str(_torch_model(estimator).save(Path(path)))
    data, _ = _dumps(estimator)
    return write_atomically(Path(path), data)


def write_atomically(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` through a temporary file and a rename; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def recorded_trusted_types(model_file: Path) -> list[str]:
    """``skops_trusted_types`` from the ``MLmodel`` file beside ``model_file`` ([] when there is none)."""
    mlmodel = Path(model_file).parent / "MLmodel"
    if not mlmodel.is_file():
        return []
    import yaml

    try:
        doc = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
        types = ((doc.get("flavors") or {}).get("sklearn") or {}).get("skops_trusted_types") or []
    except (yaml.YAMLError, AttributeError, OSError):
        return []
    return [str(t) for t in types] if isinstance(types, list) else []


def load_model(artifact: ModelArtifact, *, extra_trusted: Iterable[str] = ()) -> Any:
    """The estimator in ``artifact.path``, after verifying its SHA-256 and its types.

    Raises :class:`ArtifactTampered` on a hash mismatch (the file is not opened) and
    :class:`OperationFailed` when the file needs a type that is not trusted. A ``torch`` artifact
    comes back as a :class:`~mlctl.lifecycle.torch_model.TorchModel`.
    """
    if artifact.flavor not in MODEL_FILES:
        raise UsageError(f"{artifact.ref}: model flavor '{artifact.flavor}' is not supported by this mlctl",
                         hint=f"this mlctl loads models of flavor {' or '.join(repr(f) for f in MODEL_FILES)}")
    if artifact.flavor == "torch":
        from mlctl.lifecycle.torch_model import load_torch_model

        return load_torch_model(Path(artifact.path), sha256=artifact.sha256)
    path = Path(artifact.path)
    verify_sha256(path, artifact.sha256)
    import skops.io as sio

    trusted = set(TRUSTED_BASE) | set(recorded_trusted_types(path)) | set(extra_trusted)
    try:
        needed = set(sio.get_untrusted_types(file=path))
    except Exception as exc:
        raise OperationFailed(f"{path} is not a valid skops file: {exc}") from exc
    refused = sorted(needed - trusted)
    if refused:
        raise OperationFailed(f"refusing to load {path}: it needs types that are not trusted: {', '.join(refused)}",
                              hint="only models saved by mlctl from known estimators are loaded")
    try:
        return sio.load(path, trusted=sorted(needed))
    except Exception as exc:
        raise OperationFailed(f"cannot load {path}: {exc}",
                              hint="a model of a module:function estimator needs that module importable") from exc


@dataclass(frozen=True)
class SavedModel:
    """An MLflow model folder written by :func:`save_mlflow_model`."""

    directory: Path
    model_file: Path
    sha256: str
    trusted_types: list[str]  # skops types to trust (empty for torch)
    flavor: str = "sklearn"


def mlflow_signature(signature: Mapping[str, Any]) -> Any:
    """An ``mlflow.models.ModelSignature`` from mlctl's ``{"inputs": [...], "outputs": [...]}``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    def schema(cols: Iterable[Mapping[str, str]]) -> Any:
        return Schema([ColSpec(c["type"], c["name"]) for c in cols])

    return ModelSignature(inputs=schema(signature["inputs"]), outputs=schema(signature["outputs"]))


def requirements(flavor: str = "sklearn") -> list[str]:
    """Pinned pip requirements of a served model (the running versions)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    dists = ("mlflow", "torch", "numpy", "pandas") if flavor == "torch" else (
        "mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")
    for dist in dists:
        try:
            out.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:  # pragma: no cover - all present where models are saved
            continue
    return out


def save_mlflow_model(estimator: Any, directory: Path, *, signature: Mapping[str, Any],
                      input_example: Any = None) -> SavedModel:
    """Write an MLflow model folder (skops format, explicit trusted types) and hash its model file.

    A torch estimator gets a folder with the ``torch`` flavor instead (see :func:`save_mlflow_torch`).
    """
    if flavor_of(estimator) == "torch":
        return save_mlflow_torch(estimator, directory, signature=signature)
    import platform

    import mlflow.sklearn

    types = trusted_types(estimator)
    env = {"name": "mlflow-env", "channels": ["conda-forge"],
           "dependencies": [f"python={platform.python_version()}", "pip", {"pip": requirements()}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mlflow's own deprecation noise (pandas, integer columns)
        try:
            mlflow.sklearn.save_model(estimator, str(directory), serialization_format="skops",
                                      skops_trusted_types=types, signature=mlflow_signature(signature),
                                      input_example=input_example, conda_env=env)
        except Exception as exc:
            raise OperationFailed(f"cannot save the model as an MLflow model: {exc}") from exc
    model_file = Path(directory) / MODEL_FILE
    return SavedModel(Path(directory), model_file, canonicalize_skops_file(model_file), types)


def save_mlflow_torch(estimator: Any, directory: Path, *, signature: Mapping[str, Any]) -> SavedModel:
    """Write an MLflow model folder for a torch model: ``model.pt`` (state_dict and module
    reference), ``MLmodel`` with the ``torch`` flavor and the signature, and ``requirements.txt``;
    hash the model file."""
    from mlflow.models import Model

    model = _torch_model(estimator)
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise OperationFailed(f"cannot save the model: {directory} is not empty")
    model_file = directory / TORCH_MODEL_FILE
    sha = model.save(model_file)
    meta = model.metadata()
    mlmodel = Model(signature=mlflow_signature(signature))
    mlmodel.add_flavor("torch", model_file=TORCH_MODEL_FILE, format=meta["format"],
                       format_version=meta["format_version"], torch_version=meta["torch_version"],
                       module=meta.get("module"), module_kwargs=meta.get("module_kwargs"),
                       task=meta["task"], classes=meta["classes"], feature_names=meta["feature_names"])
    try:
        mlmodel.save(str(directory / "MLmodel"))
    except Exception as exc:
        raise OperationFailed(f"cannot write the MLmodel file: {exc}") from exc
    (directory / "requirements.txt").write_text("\n".join(requirements("torch")) + "\n", encoding="utf-8")
    return SavedModel(directory, model_file, sha, [], flavor="torch")
