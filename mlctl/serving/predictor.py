"""A loaded model and what the server needs to know about it.

:class:`Predictor` pairs a :class:`~mlctl.lifecycle.artifact.ModelArtifact` (name, version,
alias, signature, sha256) with the estimator loaded from it. ``predict`` takes a numpy 2-D
array whose columns are in signature input order and returns plain JSON-able values.

>>> from mlctl.lifecycle.artifact import ModelArtifact
>>> class Doubler:
...     def predict(self, rows):
...         return rows[:, 0] * 2
>>> art = ModelArtifact(name="m", version="1", alias=None, path="m.skops", sha256="0" * 64,
...                     signature={"inputs": [{"name": "x", "type": "double"}]})
>>> import numpy as np
>>> Predictor(art, Doubler()).predict(np.array([[1.0], [2.5]]))
[2.0, 5.0]
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from mlctl.core.errors import OperationFailed
from mlctl.serving.schema import InputSchema

if TYPE_CHECKING:
    from mlctl.lifecycle.artifact import ModelArtifact


def _plain(value: Any) -> Any:
    """A JSON-able Python value (NaN and infinities become None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def signature_from_estimator(estimator: Any) -> dict[str, Any]:
    """A signature for an estimator fitted on named columns (``feature_names_in_``), all ``double``."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return {}
    return {"inputs": [{"name": str(n), "type": "double"} for n in names]}


#: the largest finite float32: scikit-learn's trees cast their input to float32
FLOAT32_MAX = 3.4028234663852886e38


def _computes_in_float32(estimator: Any) -> bool:
    """True for scikit-learn tree models (and pipelines or ensembles ending in one), which cast
    their input to float32: a larger number overflows to infinity there."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else estimator
    return type(final).__module__.startswith(("sklearn.tree", "sklearn.ensemble._forest", "sklearn.ensemble._gb",
                                              "sklearn.ensemble._iforest"))


class Predictor:
    """A model ready to serve: its artifact's metadata plus the loaded estimator.

    The input schema comes from ``artifact.signature``; when the artifact has none, from the
    estimator's ``feature_names_in_`` (every column ``double``). An estimator fitted on named
    columns gets them by name, in its own order, whatever the signature's order (a torch model
    gets a float array with its columns in that order, no DataFrame). scikit-learn tree forests
    use the verified fast path of :mod:`mlctl.serving.fastpath` unless ``fast_path=False``.
    Raises :class:`~mlctl.core.errors.OperationFailed` when there is no usable signature, when
    it names other columns than the model was fitted on, or when the estimator has no ``predict``.
    """

    def __init__(self, artifact: ModelArtifact, estimator: Any, *, fast_path: bool = True) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise OperationFailed(f"model {artifact.ref}: the loaded object ({type(estimator).__name__}) "
                                  "has no predict method")
        signature = dict(artifact.signature or {}) or signature_from_estimator(estimator)
        try:
            self.schema = InputSchema.from_signature(signature)
        except ValueError as exc:
            raise OperationFailed(f"model {artifact.ref}: {exc}",
                                  hint="register the model with a signature (mlctl train logs one)") from exc
        if self.schema.numeric and _computes_in_float32(estimator):
            self.schema = dataclasses.replace(self.schema, max_abs=FLOAT32_MAX)
        self.artifact = artifact
        self.estimator = estimator
        self._signature = signature
        self._feature_names: list[str] | None = None
        self._order: list[int] | None = None
        # torch models take float arrays: named columns only fix the order (no DataFrame per call)
        self._arrays = getattr(estimator, "mlctl_flavor", artifact.flavor) == "torch"
        fitted = getattr(estimator, "feature_names_in_", None)
        if fitted is not None:
            names = [str(n) for n in fitted]
            if sorted(names) != sorted(self.schema.names):
                raise OperationFailed(
                    f"model {artifact.ref}: the signature's inputs ({', '.join(self.schema.names)}) are not the "
                    f"columns the model was fitted on ({', '.join(names)})")
            self._feature_names = names
            if names != list(self.schema.names):
                self._order = [self.schema.names.index(n) for n in names]
        self._fast = None
        if fast_path and self.schema.numeric and artifact.flavor == "sklearn" and not self._arrays:
            from mlctl.serving.fastpath import compile_predict

            self._fast = compile_predict(estimator)

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact, *, fast_path: bool = True) -> Predictor:
        """Load the estimator from the artifact's file (its sha256 is verified first)."""
        from mlctl.lifecycle.serialize import load_model

        if artifact.flavor == "sklearn":
            from mlctl.serving.startup import import_skops

            import_skops()  # before load_model imports it: without importing torch (see startup)
        return cls(artifact, load_model(artifact), fast_path=fast_path)

    @property
    def name(self) -> str:
        return self.artifact.name

    @property
    def version(self) -> str:
        return str(self.artifact.version)

    @property
    def signature(self) -> dict[str, Any]:
        """The model's signature: ``{"inputs": [{"name", "type"}], "outputs": [...]}``."""
        return self._signature

    @property
    def fast_path(self) -> bool:
        """True when predictions come from the verified tree fast path."""
        return self._fast is not None

    def predict(self, rows: np.ndarray) -> list[Any]:
        """Predictions for a 2-D array whose columns are in signature input order."""
        if self._fast is not None:
            out = self._fast(rows if self._order is None else rows[:, self._order])
        elif self._feature_names is not None and not self._arrays:
            out = self.estimator.predict(self._frame(rows))
        else:
            out = self.estimator.predict(rows if self._order is None else rows[:, self._order])
        values = np.asarray(out).tolist()  # numpy scalars (also inside lists, Series) become plain values
        if values and isinstance(values[0], (float, list, bytes)):
            values = [_plain(v) for v in values]
        return values

    def _frame(self, rows: np.ndarray) -> Any:
        """The rows as a DataFrame with the model's own column names and order."""
        import pandas as pd

        assert self._feature_names is not None
        kinds = dict(zip(self.schema.names, self.schema.types, strict=True))
        index = {n: i for i, n in enumerate(self.schema.names)}
        columns: dict[str, Any] = {}
        for name in self._feature_names:
            col = rows[:, index[name]]
            kind = kinds[name]
            if kind == "boolean":
                col = col.astype(bool)
            elif kind != "string":
                col = col.astype(np.float64)
            columns[name] = col
        return pd.DataFrame(columns)

    def predict_chunks(self, chunks: list[np.ndarray]) -> list[Any]:
        """Predict several requests' arrays in one call (the micro-batcher's batch function)."""
        rows = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return self.predict(rows)

    def metadata(self) -> dict[str, Any]:
        """What ``GET /metadata`` answers: name, version, alias, signature, sha256, flavor."""
        return {
            "name": self.artifact.name,
            "version": self.version,
            "alias": self.artifact.alias,
            "signature": self.signature,
            "sha256": self.artifact.sha256,
            "flavor": self.artifact.flavor,
            "run_id": self.artifact.run_id,
        }
