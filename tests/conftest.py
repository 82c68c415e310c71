"""Shared fixtures: an isolated home and working directory for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlctl.core.output import ui


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test reads the real user config, MLCTL_* variables or the repo's working tree."""
    for var in list(os.environ):
        if var.startswith("MLCTL_") and not var.startswith("MLCTL_TEST_"):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    ui.format = ui.format.__class__("table")
    ui.verbosity = 0
    ui.stdout = ui.stderr = None


@pytest.fixture
def project(isolated_env: Path) -> Path:
    """A minimal project folder with an mlctl.yaml."""
    root = isolated_env / "proj"
    root.mkdir()
    (root / "mlctl.yaml").write_text(
        "# project file\nproject:\n  name: demo  # the name\ndeploy:\n  port: 8100\n", encoding="utf-8"
    )
    return root
