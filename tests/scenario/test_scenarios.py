"""Run the user stories in scenarios/ as a user would: the installed ``mlctl`` on PATH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.scenario
REPO = Path(__file__).resolve().parents[2]


def run_scenario(name: str, *, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    bindir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "NO_COLOR": "1", **env}
    return subprocess.run(
        ["bash", str(REPO / "scenarios" / name)], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def test_demo_scenario(tmp_path: Path) -> None:
    proc = run_scenario("demo.sh", TMPDIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "wrote 16 files" in out
    assert "demo-service" in out and "tracking" in out
    start = out.index("== mlctl status -o json")
    doc = json.loads(out[out.index("{", start) : out.index("== mlctl doctor")])
    assert doc["project"] == "demo-service" and doc["template"] == "service"
    assert "optional engines" in out
    assert not list(tmp_path.glob("mlctl-demo.*"))  # the temporary project was cleaned up


@pytest.mark.slow
def test_quickstart_scenario(tmp_path: Path) -> None:
    proc = run_scenario("quickstart.sh", TMPDIR=str(tmp_path), PYTHON=sys.executable)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "quickstart: all steps passed" in proc.stdout
    assert not list(tmp_path.glob("mlctl-quickstart.*"))  # cleaned up, deployment stopped


@pytest.mark.slow
def test_detect_scenario(tmp_path: Path) -> None:
    proc = run_scenario("detect.sh", TMPDIR=str(tmp_path), PYTHON=sys.executable)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"notifications: \[.*'firing'.*'resolved'", out), out[-2000:]
    assert "detect: all steps passed" in out
    assert not list(tmp_path.glob("mlctl-detect.*"))  # cleaned up, every process stopped


@pytest.mark.slow
@pytest.mark.timeout(960)
def test_logs_scenario(tmp_path: Path) -> None:
    proc = run_scenario("logs.sh", TMPDIR=str(tmp_path), PYTHON=sys.executable, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "index: 100000 documents, 100000 with a class; lines produced: 100000" in out
    assert re.search(r"SIGKILL consumer 1", out) and "logs: all steps passed" in out
    assert not list(tmp_path.glob("mlctl-logs.*"))  # cleaned up, every process stopped


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ab_scenario(tmp_path: Path) -> None:
    proc = run_scenario("ab.sh", TMPDIR=str(tmp_path), PYTHON=sys.executable, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "{'predict 200': 10000," in out and "'feedback 200': 10000" in out
    assert "challenger beats champion" in out and "ab: all steps passed" in out
    assert not list(tmp_path.glob("mlctl-ab.*"))  # cleaned up, every process stopped


def test_every_scenario_has_a_test() -> None:
    tested = {"demo.sh"} | {
        p.name for p in (REPO / "scenarios").glob("*.sh") if f'"{p.name}"' in Path(__file__).read_text()
    }
    assert {p.name for p in (REPO / "scenarios").glob("*.sh")} <= tested
