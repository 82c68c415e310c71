"""Defaults stated in help texts and in docs/cli.md match the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from mlctl.commands import app
from mlctl.core.config import flatten, load_config

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


@pytest.fixture
def defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The effective configuration with no project, no user file and no MLCTL_* variable."""
    for var in [v for v in __import__("os").environ if v.startswith("MLCTL_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return flatten(load_config().config.model_dump())


def _help_texts() -> list[tuple[str, str]]:
    """(command path + option, help) for every option of every command."""
    out: list[tuple[str, str]] = []

    def walk(cmd: Any, path: str) -> None:  # Typer's own click-like command classes
        for param in cmd.params:
            if getattr(param, "help", None):
                out.append((f"{path} {param.opts[0]}", param.help))
        if hasattr(cmd, "list_commands"):
            ctx = type(cmd).context_class(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "mlctl")
    return out


def test_config_key_table_defaults_match_the_code(defaults: dict[str, object]) -> None:
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_.]+)` \| `([^`]*)` \|", CLI_DOC, flags=re.M)
    assert len(rows) >= 5, "the key table in docs/cli.md was not found"
    for key, documented in rows:
        assert key in defaults, f"docs/cli.md documents unknown key {key}"
        assert str(defaults[key]) == documented, f"{key}: docs say {documented!r}, the code {defaults[key]!r}"


def test_help_texts_naming_a_key_and_its_default_match_the_code(defaults: dict[str, object]) -> None:
    from mlctl.detect.base import DEFAULT_DETECTOR

    effective = {**defaults, "detect.detector": defaults.get("detect.detector") or DEFAULT_DETECTOR}
    checked = 0
    for where, text in _help_texts():
        for key, value in re.findall(r"default: ([a-z_]+\.[a-z_.]+), (?:the )?([\w./:-]+)\)", text):
            if key in effective and not value.startswith(("then", "or")):
                assert str(effective[key]) == value, f"{where}: help says {key} defaults to {value!r}"
                checked += 1
    assert checked >= 1


def test_the_documented_default_detector_is_the_one_used() -> None:
    from mlctl.detect.base import DEFAULT_DETECTOR

    said = re.findall(r"the default is `(\w+)`", CLI_DOC.split("### `mlctl detect`", 1)[1].split("\n### ", 1)[0])
    assert said == [DEFAULT_DETECTOR]
