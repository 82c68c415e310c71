"""The ``service`` template, rendered with the real renderer and checked with real tools.

kubernetes-validate and check-jsonschema are the console scripts installed next to the running
interpreter (the ``dev`` extra). The slow test builds a fresh virtual environment, installs the
rendered project's pinned requirements and runs its own tests and lint, as a user would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlctl.scaffold import list_templates, render_template

pytestmark = [pytest.mark.integration]

NAME = "fraud-api"
PACKAGE = "fraud_api"
EXPECTED_FILES = {
    "api/__init__.py",
    "api/main.py",
    "api/models.py",
    "ml/__init__.py",
    "ml/preprocessing.py",
    "ml/training.py",
    "ml/inference.py",
    "tests/test_api.py",
    "tests/test_ml.py",
    "docker/Dockerfile",
    "k8s/deployment.yaml",
    "k8s/service.yaml",
    ".github/workflows/ci.yml",
    "requirements.txt",
    "README.md",
    "mlctl.yaml",
}
BIN = Path(sys.executable).parent
# Captured at import, before tests/conftest.py points HOME at a temporary folder: the slow test's pip
# uses the user's own configuration and cache, so repeated runs do not download everything again.
_USER_ENV = {key: os.environ.get(key) for key in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("template-service") / NAME
    result = render_template("service", dest, name=NAME)
    assert set(result.files) == EXPECTED_FILES
    return dest


def rendered_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def run(cmd: list[str | Path], cwd: Path, *, env: dict[str, str] | None = None, timeout: int = 120):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_template_is_listed_with_a_description() -> None:
    [info] = [t for t in list_templates() if t.name == "service"]
    assert info.description


def test_renders_exactly_the_expected_tree(project: Path) -> None:
    assert rendered_files(project) == EXPECTED_FILES


def test_placeholders_are_substituted(project: Path) -> None:
    for rel in sorted(EXPECTED_FILES):
        text = (project / rel).read_text(encoding="utf-8")
        assert "{{" not in text, f"unrendered placeholder in {rel}"
    assert load_yaml(project / "mlctl.yaml") == {
        "project": {"name": NAME, "template": "service", "app": "api.main:app"},
        "tracking": {"uri": "sqlite:///.mlctl/mlflow.db"},
        "deploy": {"target": "local", "port": 8000, "dockerfile": "docker/Dockerfile", "manifests": "k8s"},
    }
    assert (project / "README.md").read_text(encoding="utf-8").startswith(f"# {NAME}\n")
    assert f'"{PACKAGE}"' in (project / "api/main.py").read_text(encoding="utf-8")


def test_kubernetes_manifests_validate_strictly(project: Path) -> None:
    manifests = [project / "k8s/deployment.yaml", project / "k8s/service.yaml"]
    proc = run([BIN / "kubernetes-validate", "--strict", "--kubernetes-version", "1.32.0", *manifests], project)
    assert proc.returncode == 0, report(proc)
    assert proc.stdout.count("passed") == 2, report(proc)

    deployment = load_yaml(manifests[0])
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == NAME
    assert {"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"} <= set(labels)
    spec = deployment["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    selector = spec["selector"]["matchLabels"]
    pod = spec["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    [container] = pod["spec"]["containers"]
    assert container["image"].startswith(f"{NAME}:")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]) == {"requests", "limits"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert container["ports"][0]["containerPort"] == 8000

    service = load_yaml(manifests[1])
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["port"] == 8000


def test_workflow_is_valid_and_runs_lint_and_tests(project: Path) -> None:
    workflow = project / ".github/workflows/ci.yml"
    proc = run([BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow], project)
    assert proc.returncode == 0, report(proc)
    assert "${{" not in workflow.read_text(encoding="utf-8")

    doc = load_yaml(workflow)
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request"} <= set(triggers)
    steps = [step for job in doc["jobs"].values() for step in job["steps"]]
    runs = [step.get("run", "") for step in steps]
    assert any(re.search(r"\bruff check\b", r) for r in runs), runs
    assert any(re.search(r"\bpython -m pytest\b", r) for r in runs), runs
    setups = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert [str(s["with"]["python-version"]) for s in setups] == ["3.11"]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def test_dockerfile_and_pinned_requirements(project: Path) -> None:
    instructions = dockerfile_instructions((project / "docker/Dockerfile").read_text(encoding="utf-8"))
    by_kind: dict[str, list[str]] = {}
    for kind, args in instructions:
        by_kind.setdefault(kind, []).append(args)

    assert instructions[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.11-slim(\S*)?", instructions[0][1]), instructions[0]
    users = by_kind["USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [k for k, _ in instructions].index("USER") > [k for k, _ in instructions].index("RUN")
    [healthcheck] = by_kind["HEALTHCHECK"]
    assert "/health" in healthcheck and "python" in healthcheck
    assert any(args.split()[0] == "requirements.txt" for args in by_kind["COPY"])
    assert any("pip install" in args and "-r requirements.txt" in args for args in by_kind["RUN"])
    assert by_kind["EXPOSE"] == ["8000"]
    assert "uvicorn" in by_kind["CMD"][-1] and "api.main:app" in by_kind["CMD"][-1]

    requirements = [
        line.strip()
        for line in (project / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert requirements
    unpinned = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][\w.+!-]*", r)]
    assert not unpinned, f"requirements not pinned with ==: {unpinned}"
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"fastapi", "uvicorn", "scikit-learn", "pytest", "ruff"} <= names


def _fresh_env(venv: Path) -> dict[str, str]:
    """The environment a user's shell would give the project's own virtual environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "COV_CORE_", "MLCTL_")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    for key, value in _USER_ENV.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.pop("MODEL_PATH", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_generated_project_installs_and_passes_its_own_tests_and_lint(tmp_path: Path) -> None:
    # Its own copy: running the project writes caches that the other tests should not see.
    project = tmp_path / NAME
    render_template("service", project, name=NAME)
    venv = tmp_path / "venv"
    env = _fresh_env(venv)
    python = venv / "bin" / "python"
    steps: list[tuple[list[str | Path], int]] = [
        ([sys.executable, "-m", "venv", venv], 120),
        ([python, "-m", "pip", "install", "-r", "requirements.txt"], 600),
        ([python, "-m", "pytest", "-q"], 600),
        ([venv / "bin" / "ruff", "check", "."], 120),
        ([venv / "bin" / "ruff", "format", "--check", "."], 120),
    ]
    for cmd, timeout in steps:
        started = time.monotonic()
        proc = run(cmd, project, env=env, timeout=timeout)
        print(f"{' '.join(proc.args)}: exit {proc.returncode} in {time.monotonic() - started:.1f}s")
        assert proc.returncode == 0, report(proc)
