"""pyproject.toml declares every scaffold folder, so an install prints no setuptools ambiguity warnings."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_folder_is_a_declared_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(config["tool"]["setuptools"]["packages"])
    folders = {
        "mlctl." + ".".join(p.relative_to(ROOT).parts)
        for p in (ROOT / "templates").rglob("*")
        if p.is_dir() and p.name != "__pycache__"
        and all(part.isidentifier() for part in p.relative_to(ROOT / "templates").parts)
    }
    assert folders, "no template folders found"
    assert folders <= declared, sorted(folders - declared)
    # the SPDX string form: a table is deprecated by setuptools and warns at every build
    assert isinstance(config["project"]["license"], str)
