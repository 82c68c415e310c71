"""The model server's start (``mlctl.serving.startup``): skops imported without the array
libraries, the same trusted types as a plain import, and the garbage collector paused until the
server settles."""

from __future__ import annotations

import gc
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.serialize import save_model
from mlctl.serving.startup import settle, starting

SIG = {"inputs": [{"name": f"f{i}", "type": "double"} for i in range(3)]}


def _python(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON document."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_sklearn_model_server_imports_no_torch_mlflow_or_fastapi(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    est = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    path = tmp_path / "model.skops"
    ModelArtifact("m", "1", None, path, save_model(est, path), signature=SIG).to_json(tmp_path / "artifact.json")
    got = _python(
        "import json, sys; from pathlib import Path\n"
        "from mlctl.lifecycle.artifact import ModelArtifact\n"
        "from mlctl.serving import Predictor, create_app, run_server\n"
        f"p = Predictor.from_artifact(ModelArtifact.from_json(Path({str(tmp_path / 'artifact.json')!r})))\n"
        "app = create_app(p)\n"
        "adapter = 'sklearn.externals.array_api_compat.torch'\n"
        "watched = ('torch', 'mlflow', 'fastapi', 'pandas')\n"
        "print(json.dumps({'fast_path': p.fast_path, 'placeholder_left': adapter in sys.modules,\n"
        "                  'imported': sorted(m for m in watched if m in sys.modules)}))")
    # pandas: scikit-learn imports it; torch, mlflow and FastAPI (until a request needs it): nothing does
    assert got == {"fast_path": True, "placeholder_left": False, "imported": ["pandas"]}


def test_skops_trusts_the_same_types_as_after_a_plain_import() -> None:
    got = _python(
        "import json, sys\n"
        "from mlctl.serving.startup import import_skops\n"
        "import_skops()\n"
        "from skops.io import _trusted_types as t\n"
        "quick = sorted(t.SKLEARN_ESTIMATOR_TYPE_NAMES)\n"
        "from sklearn.utils import all_estimators\n"  # walks again: now it imports every adapter
        "plain = sorted(t.get_type_name(c) for _, c in all_estimators() if t.get_type_name(c).startswith('sklearn.'))\n"
        "import sklearn.externals.array_api_compat as compat\n"
        "print(json.dumps({'same': quick == plain, 'n': len(quick), 'adapters': sorted(\n"
        "    m.rsplit('.', 1)[1] for m in sys.modules if m.startswith(compat.__name__ + '.')\n"
        "    and m.count('.') == 3 and hasattr(sys.modules[m], '__path__'))}))")
    assert got["same"] is True and int(got["n"]) > 100  # type: ignore[call-overload]
    if importlib.util.find_spec("torch") is not None:  # the real adapter once asked for
        assert "torch" in got["adapters"]  # type: ignore[operator]


def test_starting_pauses_the_collector_until_settle() -> None:
    assert gc.isenabled()
    try:
        with starting():
            assert not gc.isenabled()
            with starting():  # nested: still paused
                assert not gc.isenabled()
            assert not gc.isenabled()
            settle()  # what run_server does before serving
            assert gc.isenabled() and gc.get_freeze_count() > 0
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_the_collector_comes_back_when_the_start_fails() -> None:
    with pytest.raises(RuntimeError), starting():
        raise RuntimeError("no model")
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    try:
        with starting():
            settle()
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_settle_collects_first_only_without_a_pause() -> None:
    phases: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        phases.append(phase)

    gc.callbacks.append(seen)
    try:
        settle()
        unpaused = len(phases)
        gc.unfreeze()
        phases.clear()
        with starting():
            settle()
            paused = len(phases)
        assert unpaused == 2 and paused == 0  # one collection ("start", "stop"), then none
    finally:
        gc.callbacks.remove(seen)
        gc.unfreeze()
