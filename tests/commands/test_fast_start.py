"""Light commands import no heavy library (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ["torch", "mlflow", "sklearn", "pandas", "numpy", "statsmodels", "kubernetes", "docker", "grpc",
         "kafka", "elasticsearch", "optuna", "scipy"]

PROBE = """
import json, sys
from mlctl.commands import main
code = main(sys.argv[1:])
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(HEAVY)))
sys.stderr.write("\\nHEAVY=" + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def loaded(args: list[str], cwd: Path, heavy: list[str]) -> dict[str, object]:
    script = PROBE.replace("json.loads(HEAVY)", repr(heavy))
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return json.loads(line[len("HEAVY="):])


@pytest.mark.parametrize("args", [["--help"], ["version"], ["version", "-o", "json"], ["init", "--help"]])
def test_help_and_version_import_nothing_heavy(args: list[str], project: Path) -> None:
    result = loaded(args, project, HEAVY)
    assert result == {"code": 0, "heavy": []}


@pytest.mark.parametrize("args", [["status"], ["config", "show"], ["config", "show", "-o", "json"]])
def test_status_and_config_import_nothing_heavy(args: list[str], project: Path) -> None:
    result = loaded(args, project, HEAVY)
    assert result == {"code": 0, "heavy": []}
