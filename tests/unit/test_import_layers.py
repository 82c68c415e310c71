"""The import layers of the library, read from the source (every import, also inside functions).

    mlctl.core          the ground floor: imports nothing else of mlctl (``mlctl`` itself aside)
    mlctl.connectors    clients of external systems: core only
    mlctl.engines       recipes that start local engines: core and connectors
    capabilities        every other package or module of mlctl (lifecycle, detect, logs, serving,
                        status, scaffold and each group to come: autoscale, pipeline, ...): core,
                        connectors, engines, themselves, and another capability only through a
                        seam listed in SEAMS with its reason
    mlctl.sections      the composition root of the configuration: core and capabilities
    mlctl.commands      the CLI (``commands/``), and ``mlctl.__main__``: anything
    mlctl (__init__)    core only: every import of mlctl runs it (re-export the rest lazily)

Core reaches the composition root only by name, at run time (``COMPOSITION_ROOT``), which is how
every section is registered without core importing a capability.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: where each import root's source lives (commands/ ships as mlctl.commands; templates/ holds
#: scaffolded user code, not mlctl's)
SOURCES = {"mlctl": "mlctl", "mlctl.commands": "commands"}
INFRASTRUCTURE = ("core", "connectors", "engines")
#: layers each layer may import, besides itself and the top-level ``mlctl`` package
ALLOWED: dict[str, set[str]] = {
    "top": {"core"},
    "core": set(),
    "connectors": {"core"},
    "engines": {"core", "connectors"},
    "capability": {"core", "connectors", "engines"},
    "sections": {"core", "capability"},
}
#: (importer, imported, reason): the only imports allowed from one capability into another.
#: A name covers the module and everything under it.
SEAMS: list[tuple[str, str, str]] = [
    ("mlctl.logs.training", "mlctl.lifecycle.registry",
     "trained log classifiers are registered as MLflow model versions, like any trained model"),
    ("mlctl.logs.training", "mlctl.lifecycle.tracking",
     "log-classifier training is logged to the same MLflow tracking (connect, error mapping)"),
    ("mlctl.logs", "mlctl.lifecycle.serialize",
     "log classifiers are saved and loaded with lifecycle's skops format and SHA-256 check"),
    ("mlctl.serving", "mlctl.lifecycle.serialize",
     "the model server loads models with the same SHA-256-checked loader that saved them"),
    ("mlctl.serving", "mlctl.lifecycle.registry",
     "serving resolves registered models (name@alias) to artifacts, and `serve report --promote` moves an "
     "alias as `mlctl models promote` does"),
    ("mlctl.serving", "mlctl.lifecycle.registry_fast",
     "the gateway and experiments read aliases and versions from the registry without MLflow"),
    ("mlctl.serving.manifests", "mlctl.lifecycle.deploy.k8s_manifests",
     "the gateway's Kubernetes manifests share the model server's pod, probe and label conventions"),
    ("mlctl.serving.gateway_start", "mlctl.lifecycle.deploy.supervisor",
     "`mlctl serve start --replicas N` runs the gateway's processes under the deployment supervisor"),
    ("mlctl.serving", "mlctl.lifecycle.artifact",
     "ModelArtifact, the registered model version a deploy target (or `mlctl serve`) hands the model server"),
    ("mlctl.status", "mlctl.lifecycle.releases",
     "`mlctl status` summarises the deployments that releases record"),
]


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}: {self.importer} imports {self.imported}"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the library by dotted name."""
    out: dict[str, Path] = {}
    for name, folder in SOURCES.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([name, *parts])] = path
    return out


def _resolve(module: str, path: Path, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every mlctl module ``module`` imports: statements anywhere in the file (functions included)
    and ``importlib.import_module`` / ``__import__`` calls with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node.level, node.module)
            # `from mlctl import lifecycle` imports mlctl.lifecycle; `from mlctl import __version__` mlctl
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        for name in names:
            if name == "mlctl" or name.startswith("mlctl."):
                yield Import(module, name, path, node.lineno)


def layer(module: str) -> str:
    """``core``, ``connectors``, ``engines``, ``sections``, ``cli``, ``top`` or ``capability``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "top"
    if parts[1] in (*INFRASTRUCTURE, "sections"):
        return parts[1]
    if parts[1] in ("commands", "__main__"):
        return "cli"
    return "capability"


def capability(module: str) -> str:
    """The capability a module belongs to: ``mlctl.lifecycle.deploy.local`` -> ``mlctl.lifecycle``."""
    return ".".join(module.split(".")[:2])


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def seam_for(imp: Import) -> tuple[str, str, str] | None:
    return next((s for s in SEAMS if _under(imp.importer, s[0]) and _under(imp.imported, s[1])), None)


def violations(root: Path = ROOT) -> list[str]:
    """Every import that breaks the layers, as ``file:line: importer imports imported (why)``."""
    found = modules(root)
    known = set(found)
    out: list[str] = []
    for module, path in found.items():
        src = layer(module)
        if src == "cli":
            continue
        for imp in imports_of(module, path, known):
            dst = layer(imp.imported)
            if dst == "top" and src != "top":
                continue
            if dst == src and (src != "capability" or capability(module) == capability(imp.imported)):
                continue  # within a layer; within one capability
            if dst in ALLOWED[src]:
                continue
            if src == dst == "capability" and seam_for(imp):
                continue
            why = {
                "top": "importing any part of mlctl runs mlctl/__init__.py: re-export lazily",
                "core": "core imports only mlctl.core: capabilities, engines and connectors sit above it",
                "connectors": "a connector is a client of an external system and knows no capability",
                "engines": "engine recipes know core and connectors only",
                "capability": (f"{capability(imp.imported)} is another capability: add a documented seam to SEAMS "
                               "or move the shared code down" if dst == "capability"
                               else f"a capability does not import {dst}"),
                "sections": "the composition root imports core and capabilities only",
            }[src]
            out.append(f"{imp.where(root)} ({why})")
    return out


def test_every_import_respects_the_layers() -> None:
    assert violations() == []


def test_every_seam_is_used() -> None:
    """A seam no import uses any longer is taken off the list (so the list stays the truth)."""
    found = modules()
    used = {seam_for(imp) for m, p in found.items() if layer(m) == "capability"
            for imp in imports_of(m, p, set(found))} - {None}  # fmt: skip
    assert [s[:2] for s in SEAMS if s not in used] == []


def test_core_reaches_the_sections_only_by_name_at_run_time() -> None:
    from mlctl.core import config

    assert config.COMPOSITION_ROOT == "mlctl.sections" and "mlctl.sections" in modules()
    script = ("import sys, pkgutil, importlib, mlctl.core as core\n"
              "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('mlctl.core.' + m.name)\n"
              "print(sorted(m for m in sys.modules if m.startswith('mlctl.') and not m.startswith('mlctl.core')))\n"
              "from mlctl.core.config import load_config\n"
              "c = load_config(warn=None).config\n"
              "print(type(c).__name__, c.train.seed, c.detect.interval, c.logs.group)\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.splitlines() == ["[]", "MlctlConfig 42 15s mlctl-logs"]


@pytest.mark.parametrize(("folder", "source", "expected"), [
    ("mlctl/core", "def f():\n    from mlctl.logs import spec\n", "mlctl.core.bad imports mlctl.logs"),
    ("mlctl/core", "import mlctl.engines\n", "mlctl.core.bad imports mlctl.engines"),
    ("mlctl/core", "import importlib\nimportlib.import_module('mlctl.sections')\n",
     "mlctl.core.bad imports mlctl.sections"),
    ("mlctl/core", "from mlctl import autoscale\n", "mlctl.core.bad imports mlctl.autoscale"),
    ("mlctl/connectors", "from mlctl.detect.spec import DetectSpec\n", "mlctl.connectors.bad imports mlctl.detect"),
    ("mlctl/connectors", "from mlctl.engines import x\n", "mlctl.connectors.bad imports mlctl.engines"),
    ("mlctl/detect", "from ..logs import parse\n", "mlctl.detect.bad imports mlctl.logs.parse"),
    ("mlctl/logs", "from mlctl.lifecycle.train import train\n", "mlctl.logs.bad imports mlctl.lifecycle.train"),
    ("mlctl/lifecycle", "from mlctl.sections import MlctlConfig\n", "mlctl.lifecycle.bad imports mlctl.sections"),
    ("mlctl/pipeline", "from mlctl.commands import app\n", "mlctl.pipeline.bad imports mlctl.commands"),
])
def test_the_check_catches_a_bad_import(tmp_path: Path, folder: str, source: str, expected: str) -> None:
    for name in ("mlctl", "mlctl/core", "mlctl/logs", "mlctl/autoscale", "commands", folder):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "__init__.py").touch()
    (tmp_path / "mlctl" / "sections.py").touch()
    (tmp_path / "mlctl" / "logs" / "parse.py").touch()
    (tmp_path / folder / "bad.py").write_text(source)
    (tmp_path / folder / "fine.py").write_text("from mlctl.core import errors\nfrom mlctl import __version__\n")
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_the_top_level_package_imports_core_only(tmp_path: Path) -> None:
    for name in ("mlctl/core", "mlctl/logs"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").touch()
    (tmp_path / "commands").mkdir()
    (tmp_path / "mlctl" / "__init__.py").write_text("from mlctl.core import errors\nfrom mlctl import logs\n")
    assert violations(tmp_path) == [
        "mlctl/__init__.py:2: mlctl imports mlctl.logs "
        "(importing any part of mlctl runs mlctl/__init__.py: re-export lazily)"
    ]


def test_allowed_seams_and_layers_pass(tmp_path: Path) -> None:
    files = {
        "mlctl/logs/training.py": "def f():\n    from mlctl.lifecycle.registry import register_version\n",
        "mlctl/serving/runner.py": ("from mlctl.lifecycle.serialize import load_model\n"
                                    "from mlctl.connectors import alerts\n"),
        "mlctl/engines/docker.py": "from mlctl.connectors.docker import docker_api\n",
        "mlctl/sections.py": "from mlctl.core.config import register_section\nfrom mlctl.logs.spec import LogsSpec\n",
        "commands/logs.py": "from mlctl.logs import pipeline\nfrom mlctl.sections import MlctlConfig\n",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert violations(tmp_path) == []
