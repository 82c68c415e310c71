"""Torch models through the lifecycle: spelling, the estimator, model files, training, serving."""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import types
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlctl.core.errors import ConfigError, OperationFailed, UsageError
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.estimators import (
    build_estimator,
    check_model_name,
    default_search_space,
    is_custom,
    is_torch,
    supports,
    with_preprocessing,
)
from mlctl.lifecycle.serialize import ArtifactTampered, load_model, save_mlflow_model, save_model
from mlctl.lifecycle.spec import TrainSpec

torch = pytest.importorskip("torch")

from mlctl.lifecycle.torch_model import AdamW, TorchEstimator, TorchModel, load_torch_model  # noqa: E402

SUPPORT = "tests.support.torch_models"
MLP = f"torch:{SUPPORT}:mlp"
FAST = {"epochs": 15, "lr": 0.05}


def table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 3)
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1] * 100, "x3": x[:, 2]})
    df["label"] = np.where(x[:, 0] + x[:, 1] > 1.0, "good", "bad")
    df["three"] = np.digitize(x[:, 0], [0.33, 0.66])  # 0, 1, 2
    df["price"] = x[:, 0] * 10 + x[:, 2] * 3
    return df


FEATURES = ["x1", "x2", "x3"]


def fitted(
    task: str = "classification", target: str = "label", model: str = MLP, seed: int = 3, **params: Any
) -> tuple[Any, pd.DataFrame]:
    df = table()
    est = build_estimator(model, task, {**FAST, **params}, seed=seed)
    return est.fit(df[FEATURES], df[target]), df


def artifact(path: Path, sha: str, **kw: Any) -> ModelArtifact:
    return ModelArtifact(name="tnet", version="1", alias=None, path=path, sha256=sha, flavor="torch", **kw)


# --------------------------------------------------------------------------- spelling and spec


def test_torch_spelling_is_recognised_and_validated() -> None:
    assert is_torch(MLP) and not is_custom(MLP) and supports(MLP, "regression") and supports(MLP, "classification")
    assert check_model_name(MLP) == MLP
    with pytest.raises(ValueError, match="torch:module:function"):
        check_model_name("torch:just_a_module")
    assert TrainSpec(task="regression", model=MLP).model == MLP
    with pytest.raises(ValueError, match="torch:module:function"):
        TrainSpec(task="regression", model="torch:pkg.mod")
    space = default_search_space(MLP)
    assert space is not None and {"lr", "epochs"} <= set(space)
    assert set(space) <= set(TorchEstimator(module=len).get_params())


def test_build_checks_parameters_against_the_function_and_the_table() -> None:
    est = build_estimator(MLP, "regression", {"module__hidden": 5, "epochs": 2}, seed=9)
    assert isinstance(est, TorchEstimator) and est.random_state == 9 and est.module_params == {"hidden": 5}
    assert est.get_params()["module__hidden"] == 5 and est.get_params()["task"] == "regression"
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) module__depth, n_estimators") as info:
        build_estimator(MLP, "regression", {"n_estimators": 3, "module__depth": 2})
    assert "module__hidden" in (info.value.hint or "") and "lr" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="lr must be a number > 0"):
        build_estimator(MLP, "regression", {"lr": -1.0})
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        build_estimator(MLP, "regression", {"epochs": 2.5})
    with pytest.raises(ConfigError, match="cannot import module"):
        build_estimator("torch:no_such_module_here:make", "regression")
    # a function taking **kwargs accepts any module__ parameter
    assert build_estimator(f"torch:{SUPPORT}:sized_by_kwargs", "regression", {"module__width": 3}).module_params


def test_torch_models_are_never_wrapped_in_the_sklearn_pipeline() -> None:
    df = table()
    df.loc[0, "x1"] = np.nan
    est = build_estimator(MLP, "classification")
    assert with_preprocessing(est, df[FEATURES]) is est


# --------------------------------------------------------------------------- the estimator


def test_classifier_learns_is_deterministic_and_gives_probabilities() -> None:
    est, df = fitted()
    proba = est.predict_proba(df[FEATURES])
    assert list(est.classes_) == ["bad", "good"] and proba.shape == (len(df), 2)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (est.predict(df[FEATURES]) == df["label"]).mean() > 0.9
    assert est.loss_curve_[-1] < est.loss_curve_[0] and len(est.loss_curve_) == FAST["epochs"]
    again, _ = fitted()
    assert np.array_equal(again.predict_proba(df[FEATURES]), proba)
    other, _ = fitted(seed=4)
    assert not np.array_equal(other.predict_proba(df[FEATURES]), proba)


def test_multiclass_and_regression() -> None:
    est, df = fitted(target="three", epochs=40)
    assert list(est.classes_) == [0, 1, 2] and est.predict_proba(df[FEATURES]).shape == (len(df), 3)
    assert (est.predict(df[FEATURES]) == df["three"]).mean() > 0.8
    reg, df = fitted("regression", "price", epochs=40)
    pred = reg.predict(df[FEATURES])
    assert pred.dtype == np.float64 and pred.shape == (len(df),)
    r2 = 1 - ((pred - df["price"]) ** 2).sum() / ((df["price"] - df["price"].mean()) ** 2).sum()
    assert r2 > 0.95
    with pytest.raises(AttributeError):
        reg.predict_proba(df[FEATURES])


def test_gaps_are_filled_with_training_medians_and_columns_are_matched_by_name() -> None:
    df = table()
    df.loc[:9, "x2"] = np.nan
    est = build_estimator(MLP, "regression", FAST, seed=1).fit(df[FEATURES], df["price"])
    median = float(df["x2"].median())
    gap = pd.DataFrame({"x1": [0.5], "x2": [np.nan], "x3": [0.2]})
    filled = gap.fillna({"x2": median})
    assert np.isfinite(est.predict(gap)).all()
    assert est.predict(gap)[0] == pytest.approx(est.predict(filled)[0], abs=1e-6)
    shuffled = df[["x3", "x1", "x2"]].iloc[10:20]
    assert np.array_equal(est.predict(shuffled), est.predict(df[FEATURES].iloc[10:20]))
    with pytest.raises(ValueError, match="missing feature column"):
        est.predict(df[["x1", "x2"]])


def test_bad_functions_and_inputs_give_clear_errors() -> None:
    df = table()
    with pytest.raises(UsageError, match=r"returned dict, not a torch.nn.Module") as info:
        build_estimator(f"torch:{SUPPORT}:not_a_module", "classification", FAST).fit(df[FEATURES], df["label"])
    assert "n_features" in (info.value.hint or "")
    with pytest.raises(UsageError, match=r"returns shape \(2, 5\).*expected \(batch, 2\)"):
        build_estimator(f"torch:{SUPPORT}:wrong_width", "classification", FAST).fit(df[FEATURES], df["label"])
    with_text = df.assign(colour="red")
    with pytest.raises(ConfigError, match="not numeric: colour"):
        build_estimator(MLP, "classification", FAST).fit(with_text[[*FEATURES, "colour"]], df["label"])
    with pytest.raises(ValueError, match="not fitted"):
        build_estimator(MLP, "classification").predict(df[FEATURES])


def test_the_optimizer_matches_torch_adamw() -> None:
    torch.manual_seed(0)
    ours = torch.nn.Linear(4, 3)
    theirs = torch.nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    mine = AdamW(torch, ours.parameters(), lr=0.05, weight_decay=0.1)
    reference = torch.optim.AdamW(theirs.parameters(), lr=0.05, weight_decay=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    for _ in range(25):
        for net, opt in ((ours, mine), (theirs, reference)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(ours.weight, torch.nn.Linear(4, 3).weight)


def test_diverging_training_is_reported() -> None:
    df = table()
    y = df["price"] * 1e30
    with pytest.raises(OperationFailed, match="diverged") as info:
        build_estimator(f"torch:{SUPPORT}:linear", "regression", {"epochs": 5, "lr": 1e30}).fit(df[FEATURES], y)
    assert isinstance(info.value, ValueError)  # a tuning trial counts it as failed, not the whole study


# --------------------------------------------------------------------------- files


def test_model_file_round_trips_with_its_metadata(tmp_path: Path) -> None:
    est, df = fitted(target="three", epochs=20)
    path = tmp_path / "m" / "model.pt"
    sha = save_model(est, path)
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as archive:  # weights and metadata only: no TorchScript code or constants
        assert not [n for n in archive.namelist() if "/code/" in n or n.endswith("constants.pkl")]
    loaded = load_model(artifact(path, sha))
    assert isinstance(loaded, TorchModel)
    assert np.array_equal(loaded.predict_proba(df[FEATURES]), est.predict_proba(df[FEATURES]))
    assert np.array_equal(loaded.predict(df[FEATURES]), est.predict(df[FEATURES]))
    assert list(loaded.feature_names_in_) == FEATURES and loaded.classes_.tolist() == [0, 1, 2]
    rows = df[FEATURES].to_numpy()  # plain arrays work too (columns in fitted order)
    assert np.array_equal(loaded.predict(rows), est.predict(df[FEATURES]))


def test_a_module_with_python_in_its_forward_round_trips(tmp_path: Path) -> None:
    est, df = fitted("regression", "price", model=f"torch:{SUPPORT}:python_only")
    sha = save_model(est, tmp_path / "model.pt")
    loaded = load_torch_model(tmp_path / "model.pt", sha256=sha)
    assert np.array_equal(loaded.predict(df[FEATURES]), est.predict(df[FEATURES]))


def test_a_tampered_file_is_refused_before_it_is_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    est, _ = fitted()
    path = tmp_path / "model.pt"
    sha = save_model(est, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    opened: list[str] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append("load"))
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: opened.append("jit"))
    with pytest.raises(ArtifactTampered, match="refusing to load"):
        load_model(artifact(path, sha))
    with pytest.raises(ArtifactTampered, match="refusing to load"):
        load_torch_model(path, sha256=sha)
    assert opened == []


def test_a_tampered_metadata_entry_is_refused_too(tmp_path: Path) -> None:
    """Changing what the file says to rebuild (not only the weights) changes its digest."""
    est, _ = fitted()
    path = tmp_path / "model.pt"
    sha = save_model(est, path)
    data = path.read_bytes()
    forged = data.replace(b"tests.support.torch_models:mlp", b"tests.support.torch_models:lin")
    assert forged != data and len(forged) == len(data)
    path.write_bytes(forged)
    with pytest.raises(ArtifactTampered) as info:
        load_model(artifact(path, sha))
    assert info.value.details["expected"] == sha and info.value.details["actual"] != sha


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_a_foreign_torchscript_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(path))
    from mlctl.lifecycle.serialize import sha256_file

    with pytest.raises(OperationFailed, match="no mlctl metadata"):
        load_model(artifact(path, sha256_file(path)))
    path.write_bytes(b"not a zip at all")
    with pytest.raises(OperationFailed, match="not a torch model file"):
        load_model(artifact(path, sha256_file(path)))
    torch.save(torch.nn.Linear(3, 1).state_dict(), path)  # weights without mlctl's metadata
    with pytest.raises(OperationFailed, match="no mlctl metadata"):
        load_model(artifact(path, sha256_file(path)))
    torch.save({"mlctl": "{}", "state_dict": {}, "code": Path("x")}, path)  # an object to unpickle: never run
    with pytest.raises(OperationFailed, match="not a torch model file"):
        load_model(artifact(path, sha256_file(path)))


TRAIN_AND_SAVE = """
import sys
import numpy as np
import pandas as pd
from mlctl.lifecycle.estimators import build_estimator
from mlctl.lifecycle.serialize import save_model

rng = np.random.RandomState(0)
x = pd.DataFrame(rng.rand(120, 3), columns=["x1", "x2", "x3"])
y = np.where(x["x1"] + x["x2"] > 1.0, "good", "bad")
est = build_estimator("torch:tests.support.torch_models:mlp", "classification",
                      {"epochs": 5, "module__hidden": 6}, seed=11)
print(save_model(est.fit(x, y), __import__("pathlib").Path(sys.argv[1])))
"""


def test_the_same_training_in_two_processes_gives_the_same_file(tmp_path: Path) -> None:
    """Same data, parameters and seed: byte-identical files whatever the process's hash seed."""
    root = Path(__file__).resolve().parents[2]
    digests = []
    for hash_seed in ("1", "2024"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        path = tmp_path / hash_seed / "model.pt"
        out = subprocess.run([sys.executable, "-c", TRAIN_AND_SAVE, str(path)], cwd=root, env=env,
                             capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr
        digests.append(out.stdout.strip().splitlines()[-1])
        assert digests[-1] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert b"def mlp(n_features" in path.read_bytes()  # the module's source travels inside
    assert digests[0] == digests[1]
    assert (tmp_path / "1" / "model.pt").read_bytes() == (tmp_path / "2024" / "model.pt").read_bytes()


def test_the_module_reference_round_trips(tmp_path: Path) -> None:
    est, df = fitted(module__hidden=5)
    path = tmp_path / "model.pt"
    sha = save_model(est, path)
    loaded = load_torch_model(path, sha256=sha)
    assert loaded.reference == f"{SUPPORT}:mlp" == est.model_.reference
    assert loaded.module_kwargs == {"n_features": 3, "n_outputs": 2, "hidden": 5} == est.model_.module_kwargs
    meta = loaded.metadata()
    assert meta["format"] == "state_dict" and meta["module"] == f"{SUPPORT}:mlp" and meta["format_version"] == 2
    # the network was rebuilt by the function (not unpickled), with the trained weights
    from tests.support.torch_models import mlp

    assert type(loaded.module.net) is type(mlp(3, 2, hidden=5))
    assert [tuple(p.shape) for p in loaded.module.net.parameters()] == [(5, 3), (5,), (2, 5), (2,)]
    for (k, a), (_, b) in zip(loaded.module.state_dict().items(), est.model_.module.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert np.array_equal(loaded.predict_proba(df[FEATURES]), est.predict_proba(df[FEATURES]))
    # saving the loaded model again gives the same file
    assert save_model(loaded, tmp_path / "again.pt") == sha


def test_loading_leaves_the_callers_random_state_alone(tmp_path: Path) -> None:
    est, _ = fitted()
    sha = save_model(est, tmp_path / "model.pt")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_torch_model(tmp_path / "model.pt", sha256=sha)
    assert torch.equal(torch.rand(3), expected)


def local_net(n_features: int, n_outputs: int) -> Any:
    return torch.nn.Linear(n_features, n_outputs)


def test_a_function_that_cannot_be_imported_by_name_is_refused_at_save(tmp_path: Path) -> None:
    df = table()

    def nested(n_features: int, n_outputs: int) -> Any:
        return torch.nn.Linear(n_features, n_outputs)

    est = TorchEstimator(module=nested, epochs=2, random_state=0).fit(df[FEATURES], df["label"])
    with pytest.raises(OperationFailed, match="cannot be imported by name"):
        save_model(est, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()
    # a top-level function of an importable module is fine
    est = TorchEstimator(module=local_net, epochs=2, random_state=0).fit(df[FEATURES], df["label"])
    sha = save_model(est, tmp_path / "model.pt")
    assert load_torch_model(tmp_path / "model.pt", sha256=sha).reference == f"{__name__}:local_net"


def test_a_function_that_now_builds_another_network_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.support.torch_models as nets

    est, _ = fitted()
    sha = save_model(est, tmp_path / "model.pt")
    monkeypatch.setattr(nets, "mlp", lambda n_features, n_outputs, hidden=8: nets.linear(n_features, n_outputs))
    with pytest.raises(OperationFailed, match="weights do not fit the network") as info:
        load_torch_model(tmp_path / "model.pt", sha256=sha)
    assert "train the model again" in (info.value.hint or "")
    monkeypatch.delattr(nets, "mlp")
    with pytest.raises(OperationFailed, match="cannot import tests.support.torch_models:mlp"):
        load_torch_model(tmp_path / "model.pt", sha256=sha)


# --------------------------------------------------------------------------- self-contained files

USER_NETS = '''"""A project's network, in one file (no __init__.py: its package is a namespace)."""
import torch


class Net(torch.nn.Module):
    def __init__(self, n_features, n_outputs, hidden):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.Tanh())
        self.head = torch.nn.Linear(hidden, n_outputs)

    def forward(self, x):
        return self.head(self.body(x))


def make(n_features, n_outputs, hidden=4):
    return Net(n_features, n_outputs, hidden)
'''


@pytest.fixture
def user_nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A project module ``acme_<id>.nets`` in a folder put on the Python path: its name and that folder."""
    package = f"acme_{uuid.uuid4().hex[:10]}"
    src = tmp_path / "src"
    (src / package).mkdir(parents=True)
    (src / package / "nets.py").write_text(USER_NETS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(src))
    yield f"{package}.nets", src
    forget(package)


def forget(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def uninstall(name: str, src: Path) -> None:
    """Make the project's modules unimportable here, as in an image that holds only the model."""
    src.rename(src.with_name("src-gone"))
    forget(name.partition(".")[0])


LOAD_ELSEWHERE = """
import importlib.util, inspect, json, logging, sys
import pandas as pd
from mlctl.lifecycle.torch_model import load_torch_model

path, sha, name = sys.argv[1:4]
assert importlib.util.find_spec(name.partition(".")[0]) is None, "the project module is importable here"
log = logging.getLogger("mlctl.torch")
log.setLevel(logging.DEBUG)
log.addHandler(logging.StreamHandler())
model = load_torch_model(path, sha256=sha)
net = type(model.module.net)
print(json.dumps({
    "proba": model.predict_proba(pd.read_csv("rows.csv")).tolist(),
    "module": net.__module__,
    "file": net.forward.__code__.co_filename,
    "source": inspect.getsource(net.forward).splitlines()[0].strip(),
    "embedded": hasattr(sys.modules[name], "__mlctl_source__"),
}))
"""


def test_a_one_file_module_travels_inside_the_model(user_nets: tuple[str, Path], tmp_path: Path) -> None:
    """Loaded where the module is not installed (another folder, another Python path), the model
    is rebuilt from the source in its file and predicts what it predicted in training."""
    name, src = user_nets
    est, df = fitted(model=f"torch:{name}:make", module__hidden=5)
    path = tmp_path / "model" / "model.pt"
    sha = save_model(est, path)
    text = (src / name.replace(".", "/")).with_suffix(".py").read_text(encoding="utf-8")
    source = load_torch_model(path, sha256=sha).metadata()["module_source"]  # imported by name here
    assert source == {
        "name": name,
        "file": name.replace(".", "/") + ".py",  # relative: no path of this machine in the file
        "text": text,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    assert str(tmp_path).encode() not in path.read_bytes()
    expected = est.predict_proba(df[FEATURES])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    df[FEATURES].to_csv(elsewhere / "rows.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # mlctl, not src/
    out = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, str(path), sha, name], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert np.array_equal(np.asarray(got["proba"]), expected)
    assert got["embedded"] and got["module"] == name and got["file"] == source["file"]
    assert got["source"] == "def forward(self, x):"  # tracebacks show the embedded lines
    assert "built it from the source the file embeds" in out.stderr


def test_the_embedded_source_runs_only_after_the_sha256_check(
    user_nets: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, src = user_nets
    est, df = fitted(model=f"torch:{name}:make")
    path = tmp_path / "model.pt"
    sha = save_model(est, path)
    uninstall(name, src)
    ran: list[Any] = []
    real_exec = builtins.exec

    def spy(code: Any, *args: Any) -> Any:
        ran.append(getattr(code, "co_filename", code))
        return real_exec(code, *args)

    monkeypatch.setattr(builtins, "exec", spy)
    data = path.read_bytes()
    at = data.index(b"return Net(n_features")  # the embedded text lies as is in the archive
    forged = bytearray(data)
    forged[at + 7] ^= 0x01  # "Net" -> "Oet": code that would fail, were it run
    path.write_bytes(bytes(forged))
    with pytest.raises(ArtifactTampered, match="refusing to load"):
        load_torch_model(path, sha256=sha)
    with pytest.raises(ArtifactTampered, match="refusing to load"):
        load_model(artifact(path, sha))
    assert ran == [] and name not in sys.modules
    path.write_bytes(data)  # the genuine file: its source runs, once
    loaded = load_torch_model(path, sha256=sha)
    file = name.replace(".", "/") + ".py"
    assert ran.count(file) == 1 and hasattr(sys.modules[name], "__mlctl_source__")
    assert np.array_equal(loaded.predict_proba(df[FEATURES]), est.predict_proba(df[FEATURES]))
    assert ran.count(file) == 1 and load_model(artifact(path, sha)).reference == f"{name}:make"  # reused
    assert save_model(loaded, tmp_path / "again.pt") == sha  # the loaded model saves to the same file


def test_a_module_importing_other_project_modules_needs_them_installed(
    user_nets: tuple[str, Path], tmp_path: Path
) -> None:
    name, src = user_nets
    package = name.partition(".")[0]
    (src / package / "sizes.py").write_text("HIDDEN = 3\n", encoding="utf-8")
    (src / package / "uses_sizes.py").write_text(
        f"import torch\nfrom {package}.sizes import HIDDEN\n\n\n"
        "def make(n_features, n_outputs):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(n_features, HIDDEN), torch.nn.Linear(HIDDEN, n_outputs))\n",
        encoding="utf-8",
    )
    est, _ = fitted(model=f"torch:{package}.uses_sizes:make")
    path = tmp_path / "model.pt"
    sha = save_model(est, path)
    # the module is installed but what it imports is not: the import error is reported as before
    (src / package / "sizes.py").unlink()
    forget(package)
    with pytest.raises(OperationFailed, match=rf"cannot import {package}.uses_sizes:make.*No module named"):
        load_torch_model(path, sha256=sha)
    # neither is installed: only the one module travels, and the error says what is missing
    uninstall(name, src)
    with pytest.raises(OperationFailed, match=rf"imports {package}.sizes, which is not installed here") as info:
        load_torch_model(path, sha256=sha)
    assert "install the modules it imports" in (info.value.hint or "")
    assert not [n for n in sys.modules if n.startswith(package)]  # nothing half-built is left behind


def test_a_module_without_a_source_file_is_saved_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"acme_{uuid.uuid4().hex[:10]}"
    module = types.ModuleType(name)  # made in memory: no file to read
    exec("import torch\n\ndef make(n_features, n_outputs):\n    return torch.nn.Linear(n_features, n_outputs)\n",
         module.__dict__)
    monkeypatch.setitem(sys.modules, name, module)
    df = table()
    est = TorchEstimator(module=module.make, epochs=2, random_state=0).fit(df[FEATURES], df["label"])
    path = tmp_path / "model.pt"
    with pytest.warns(UserWarning, match=rf"without the source of {name}.*images cannot load it"):
        sha = save_model(est, path)
    loaded = load_torch_model(path, sha256=sha)  # importable here: loads as before
    assert "module_source" not in loaded.metadata()
    assert np.array_equal(loaded.predict(df[FEATURES]), est.predict(df[FEATURES]))
    del sys.modules[name]
    with pytest.raises(OperationFailed, match=f"cannot import {name}:make") as info:
        load_torch_model(path, sha256=sha)
    assert "does not carry the module's source" in (info.value.hint or "")


def test_a_torchscript_file_of_an_older_mlctl_still_loads_with_a_warning(tmp_path: Path) -> None:
    from tests.support.torch_models import save_as_torchscript

    est, df = fitted(target="three", epochs=20)
    path = tmp_path / "model.pt"
    sha = save_as_torchscript(est.model_, path)
    with pytest.warns(FutureWarning, match="TorchScript is deprecated"):
        loaded = load_model(artifact(path, sha))
    assert isinstance(loaded, TorchModel) and loaded.reference is None
    assert loaded.classes_.tolist() == [0, 1, 2] and list(loaded.feature_names_in_) == FEATURES
    assert np.allclose(loaded.predict_proba(df[FEATURES]), est.predict_proba(df[FEATURES]), atol=1e-6)
    assert np.array_equal(loaded.predict(df[FEATURES]), est.predict(df[FEATURES]))
    with pytest.raises(OperationFailed, match="cannot be saved again") as info:
        save_model(loaded, tmp_path / "again.pt")
    assert "train the model again" in (info.value.hint or "")
    path.write_bytes(path.read_bytes()[:-1] + b"!")  # the same SHA-256 check guards these files
    with pytest.raises(ArtifactTampered):
        load_model(artifact(path, sha))


def test_mlflow_folder_records_the_torch_flavor(tmp_path: Path) -> None:
    est, df = fitted()
    signature = {
        "inputs": [{"name": n, "type": "double"} for n in FEATURES],
        "outputs": [{"name": "label", "type": "string"}],
    }
    saved = save_mlflow_model(est, tmp_path / "model", signature=signature, input_example=df[FEATURES].head())
    assert saved.flavor == "torch" and saved.model_file.name == "model.pt" and saved.trusted_types == []
    from mlctl.lifecycle.serialize import sha256_file

    assert saved.sha256 == sha256_file(saved.model_file)
    mlmodel = yaml.safe_load((saved.directory / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["torch"]
    assert flavor["model_file"] == "model.pt" and flavor["format"] == "state_dict"
    assert flavor["module"] == f"{SUPPORT}:mlp"
    assert flavor["module_kwargs"] == {"n_features": 3, "n_outputs": 2}
    assert flavor["task"] == "classification" and flavor["classes"] == ["bad", "good"]
    assert flavor["feature_names"] == FEATURES and flavor["torch_version"] == torch.__version__.split("+")[0]
    assert "sklearn" not in mlmodel["flavors"]
    from mlctl.lifecycle.registry import read_signature

    assert read_signature(saved.directory / "MLmodel") == signature
    assert any(r.startswith("torch==") for r in (saved.directory / "requirements.txt").read_text().split())
    assert not list(saved.directory.glob("*.pkl")) and not list(saved.directory.glob("*.skops"))


# --------------------------------------------------------------------------- serving


def test_the_predictor_serves_a_loaded_torch_model(tmp_path: Path) -> None:
    from mlctl.serving import Predictor, create_app

    est, df = fitted()
    sha = save_model(est, tmp_path / "model.pt")
    # the signature lists the columns in another order than the model was fitted on
    sig = {
        "inputs": [{"name": n, "type": "double"} for n in ["x3", "x1", "x2"]],
        "outputs": [{"name": "label", "type": "string"}],
    }
    predictor = Predictor.from_artifact(artifact(tmp_path / "model.pt", sha, signature=sig))
    assert not predictor.fast_path and predictor.metadata()["flavor"] == "torch"
    rows = df[FEATURES].iloc[:20]
    expected = est.predict(rows).tolist()
    assert predictor.predict(rows[["x3", "x1", "x2"]].to_numpy()) == expected

    async def main() -> None:
        app = create_app(predictor)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
            async with app.router.lifespan_context(app):
                r = await client.post("/v1/predict", json={"records": rows.to_dict(orient="records")})
                assert r.status_code == 200, r.text
                assert r.json() == {"predictions": expected, "model": "tnet", "version": "1"}
                r = await client.get("/metadata")
                assert r.json()["flavor"] == "torch"

    asyncio.run(main())


# --------------------------------------------------------------------------- training end to end


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlctl.lifecycle.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-torch") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def project(root: Path, store: Path, **train: Any) -> Any:
    from mlctl.core.config import load_config

    (root / "data").mkdir(parents=True)
    df = table(240)
    df.loc[[5, 50], "x3"] = np.nan
    df.to_csv(root / "data" / "train.csv", index=False)
    spec = {
        "data": "data/train.csv",
        "target": "label",
        "features": FEATURES,
        "task": "classification",
        "model": MLP,
        "params": dict(FAST),
        "seed": 7,
    } | train
    (root / "mlctl.yaml").write_text(yaml.safe_dump({"project": {"name": "demo"}, "train": spec}), encoding="utf-8")
    (root / ".mlctl").mkdir()
    shutil.copy(store, root / ".mlctl" / "mlflow.db")
    return load_config(start=root, use_user_file=False)


def registered_artifact(root: Path, name: str, version: str) -> ModelArtifact:
    """The registered version's folder downloaded, described by its version tags."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    from mlctl.lifecycle.registry import TAG_FLAVOR, TAG_PATH, TAG_SHA256, read_signature

    uri = f"sqlite:///{root / '.mlctl' / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = c.get_model_version(name, version)
    source = c.get_model_version_download_uri(name, version)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(root / "dl"), tracking_uri=uri))
    return ModelArtifact(
        name=name,
        version=version,
        alias=None,
        path=folder / mv.tags[TAG_PATH],
        sha256=mv.tags[TAG_SHA256],
        flavor=mv.tags[TAG_FLAVOR],
        signature=read_signature(folder / "MLmodel"),
        run_id=mv.run_id,
    )


def test_train_registers_a_torch_classifier_that_loads_back_identically(isolated_env: Path, mlflow_store: Path) -> None:
    from mlctl.lifecycle.train import TrainOptions, train

    root = isolated_env / "proj"
    loaded = project(root, mlflow_store, cv=2, params={**FAST, "module__hidden": 6}, gates={"min_accuracy": 0.8})
    result = train(loaded, TrainOptions(register="tnet"))
    assert result.registered is not None and result.registered.version == "1"
    assert result.metrics["accuracy"] > 0.8 and 0.5 < result.metrics["roc_auc"] <= 1.0
    assert result.params["module__hidden"] == 6 and result.params["model"] == MLP
    art = registered_artifact(root, "tnet", "1")
    assert art.flavor == "torch" and art.path.name == "model.pt" and art.sha256 == result.artifact_sha256
    assert [c["name"] for c in art.signature["inputs"]] == FEATURES
    model = load_model(art)
    # cv: the final model is fitted on every row; the same spec and seed give the same network
    df = pd.read_csv(root / "data" / "train.csv")
    again = build_estimator(MLP, "classification", {**FAST, "module__hidden": 6}, seed=7).fit(df[FEATURES], df["label"])
    assert np.array_equal(model.predict_proba(df[FEATURES]), again.predict_proba(df[FEATURES]))
    assert np.array_equal(model.predict(df[FEATURES]), again.predict(df[FEATURES]))
    # the registry resolves it by alias (model.pt, hash checked) and the server's Predictor runs it
    from mlctl.lifecycle.registry import resolve_model
    from mlctl.serving.predictor import Predictor

    resolved = resolve_model("tnet@challenger", loaded)
    assert resolved.flavor == "torch" and resolved.path.name == "model.pt"
    assert resolved.sha256 == result.artifact_sha256
    served = Predictor.from_artifact(resolved)
    rows = df[[c["name"] for c in served.signature["inputs"]]].to_numpy(dtype=float)[:5]
    assert [str(p) for p in served.predict(rows)] == [str(p) for p in again.predict(df[FEATURES])[:5]]


def test_train_a_torch_regressor_with_tuning(isolated_env: Path, mlflow_store: Path) -> None:
    from mlctl.lifecycle.train import TrainOptions, plan_training, train

    root = isolated_env / "proj"
    loaded = project(
        root,
        mlflow_store,
        task="regression",
        target="price",
        metrics=["r2", "rmse"],
        search_space={
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
            "epochs": {"type": "int", "low": 5, "high": 10},
        },
    )
    result = train(loaded, TrainOptions(register="treg", tune=2))
    assert result.tuning is not None and result.tuning.trials_run == 2
    assert set(result.tuning.best_params) == {"lr", "epochs"}
    assert result.params["lr"] == result.tuning.best_params["lr"]
    assert result.metrics["r2"] > 0.5
    art = registered_artifact(root, "treg", "1")
    assert art.flavor == "torch"
    preds = load_model(art).predict(pd.read_csv(root / "data" / "train.csv")[FEATURES])
    assert preds.shape == (240,) and np.isfinite(preds).all()
    # without a search space in the spec, --tune uses the torch default
    loaded.config.train.search_space = {}
    plan = plan_training(loaded, TrainOptions(tune=3))
    assert plan.tuning is not None and set(plan.tuning["search_space"]) == {
        "lr",
        "epochs",
        "weight_decay",
        "batch_size",
    }
    assert any("state_dict + module reference" in step for step in plan.steps)
