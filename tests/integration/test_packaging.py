"""`pip install .` gives one import root, `mlctl`, with commands/ and templates/ inside it; a regular
(not editable) install of that wheel runs from site-packages.

The wheel is :func:`mlctl.lifecycle.deploy.docker_wheels.mlctl_wheel`'s: built from a copy of this
checkout (nothing is written into it) and cached by a hash of the sources in ``~/.cache/mlctl``, so
this module and the docker target's tests share one build per state of the sources.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlctl.lifecycle.deploy.docker_wheels import cache_dir, mlctl_wheel

REPO = Path(__file__).resolve().parents[2]


def install_in_fresh_venv(wheel: Path, venv: Path) -> Path:
    """A new virtual environment with mlctl installed from ``wheel``, not editable; returns its bin folder.

    Only mlctl is installed into it (``--no-deps``, about a second): its dependencies are this
    environment's, reached through a ``.pth`` line that appends this environment's site-packages to
    ``sys.path`` after the venv's own. A path line processes none of the ``.pth`` files found there,
    so this environment's editable mlctl stays out of sight: ``import mlctl`` finds the installed copy.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_mlctl_test_deps.pth").write_text("".join(f"{path}\n" for path in ours), encoding="utf-8")
    return venv / "bin"


@pytest.fixture(scope="module")
def wheel_path() -> Path:
    return mlctl_wheel(cache_dir())


@pytest.fixture(scope="module")
def wheel(wheel_path: Path) -> Iterator[zipfile.ZipFile]:
    with zipfile.ZipFile(wheel_path) as zf:
        yield zf


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


def test_a_regular_install_runs_from_site_packages(wheel_path: Path, tmp_path: Path) -> None:
    bin_dir = install_in_fresh_venv(wheel_path, tmp_path / "venv")
    where = subprocess.run([str(bin_dir / "python"), "-c", "import mlctl; print(mlctl.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")) and "site-packages" in where
    version = subprocess.run([str(bin_dir / "mlctl"), "--version"], check=True, capture_output=True, text=True,
                             cwd=tmp_path)
    assert version.stdout.startswith("mlctl ")
