"""The library's public API: curated package ``__init__``s, light to import, and no module reaching
into another package's private (underscore) modules or names."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: source folder -> the import name it ships as
SOURCES = {ROOT / "mlctl": "mlctl", ROOT / "commands": "mlctl.commands"}
#: packages whose __init__ names what a user of the library imports (lazily)
CURATED = ["mlctl.core", "mlctl.connectors", "mlctl.detect", "mlctl.logs", "mlctl.lifecycle",
           "mlctl.lifecycle.deploy", "mlctl.serving", "mlctl.serving.experiments",
           "mlctl.serving.experiments.strategies", "mlctl.engines"]
HEAVY = ["numpy", "pandas", "sklearn", "scipy", "mlflow", "torch", "fastapi", "uvicorn", "confluent_kafka",
         "kubernetes", "opensearchpy", "statsmodels"]


def _modules() -> list[tuple[str, Path]]:
    found = []
    for folder, name in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            if "templates" in path.relative_to(folder).parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join([name, *parts]), path))
    return found


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _reaches(importer: str, is_package: bool, target: str, names: list[str]) -> list[str]:
    """The private modules or names of another package that ``importer`` imports from ``target``."""
    own = importer if is_package else importer.rpartition(".")[0]
    bad = []
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            holder = ".".join(parts[:i])  # the package the private module belongs to
            if not (own == holder or own.startswith(holder + ".")):
                bad.append(target)
            break
    holder = target.rpartition(".")[0]
    if not (own == holder or own.startswith(holder + ".")) or own == "":
        bad += [f"{target}.{n}" for n in names if _private(n)]
    return bad


def test_no_module_reaches_into_another_packages_private_names() -> None:
    offences = []
    for name, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == "mlctl":
                found = _reaches(name, path.name == "__init__.py", node.module, [a.name for a in node.names])
                offences += [f"{path.relative_to(ROOT)}:{node.lineno} imports {what}" for what in found]
    assert not offences, "\n".join(offences)


def test_the_private_name_rule_itself() -> None:
    assert _reaches("mlctl.lifecycle.torch_model", False, "mlctl.lifecycle._torch_artifact", ["TorchModel"]) == []
    assert _reaches("mlctl.serving.predictor", False, "mlctl.lifecycle._torch_artifact", ["X"]) == [
        "mlctl.lifecycle._torch_artifact"]
    assert _reaches("mlctl.logs.retrain", False, "mlctl.logs.training", ["_split"]) == []
    assert _reaches("mlctl.detect.watch", False, "mlctl.logs.training", ["_split", "ok"]) == [
        "mlctl.logs.training._split"]


@pytest.mark.parametrize("package", CURATED)
def test_every_public_name_of_a_curated_package_resolves(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert exported, f"{package} names its public API in __all__"
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert getattr(module, name) is not None, f"{package}.{name}"
    assert set(exported) <= set(dir(module))


def test_importing_the_packages_imports_no_heavy_library() -> None:
    code = (f"import json, sys\nimport {', '.join(CURATED)}\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == []
