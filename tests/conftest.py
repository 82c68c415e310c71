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


# --------------------------------------------------------------------------- time per tier

_TIER_SECONDS: dict[str, float] = {}
_TIER_TESTS: dict[str, set[str]] = {}


def _tier(nodeid: str) -> str:
    """``unit``, ``command``, ``integration``, ``scenario`` or ``doctest`` for a test id."""
    path = nodeid.split("::", 1)[0]
    for folder, tier in (("tests/unit/", "unit"), ("tests/commands/", "command"),
                         ("tests/integration/", "integration"), ("tests/scenario/", "scenario")):
        if path.startswith(folder):
            return tier
    return "doctest" if path.startswith("mlctl/") else "other"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add every phase's time (setup, call, teardown) to the test's tier."""
    tier = _tier(report.nodeid)
    _TIER_SECONDS[tier] = _TIER_SECONDS.get(tier, 0.0) + report.duration
    _TIER_TESTS.setdefault(tier, set()).add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the time spent in each tier: each command group has a budget (docs/testing.md)."""
    if not _TIER_SECONDS:
        return
    terminalreporter.section("time per tier")
    workers = getattr(terminalreporter.config.option, "numprocesses", None)
    if workers:  # pytest-xdist: durations are summed over the workers, wall time is lower
        terminalreporter.write_line(f"(test time summed over {workers} workers)")
    for tier, seconds in sorted(_TIER_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{tier:<12} {len(_TIER_TESTS[tier]):>5} tests {seconds / 60:>7.1f} min")
