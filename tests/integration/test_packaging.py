"""`pip install .` gives one import root, `mlctl`, with commands/ and templates/ inside it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("mlctl-*.whl")
    return zipfile.ZipFile(path)


def test_one_import_root(wheel: zipfile.ZipFile) -> None:
    roots = {name.split("/")[0] for name in wheel.namelist()}
    assert {r for r in roots if not r.endswith(".dist-info")} == {"mlctl"}


def test_every_module_ships(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = {f"mlctl/{p.relative_to(REPO / 'mlctl')}" for p in (REPO / "mlctl").rglob("*.py")}
    expected |= {f"mlctl/commands/{p.relative_to(REPO / 'commands')}" for p in (REPO / "commands").rglob("*.py")}
    assert expected - names == set()
    assert "mlctl/py.typed" in names


def test_templates_ship_with_their_dotfiles(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for p in (REPO / "templates" / "service").rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            assert f"mlctl/templates/{p.relative_to(REPO / 'templates')}" in names


def test_console_script(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "mlctl = mlctl.commands:main" in wheel.read(entry_points).decode()
