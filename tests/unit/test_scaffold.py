from __future__ import annotations

from pathlib import Path

import pytest

from mlctl import scaffold
from mlctl.core.errors import NotFound, UsageError


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tpl"
    t = root / "mini"
    (t / "dot-github" / "workflows").mkdir(parents=True)
    (t / "pkg").mkdir()
    (t / "template.yaml").write_text("description: A tiny template.\n")
    (t / "dot-github" / "workflows" / "ci.yml").write_text("name: {{ name }} ci\n")
    (t / "pkg" / "main.py.tmpl").write_text("PACKAGE = '{{package}}'\nVERSION = '{{ mlctl_version }}'\n")
    (t / "README.md").write_text("# {{ name }}\n${{ github.sha }} stays\n")
    (root / "not-a-template").mkdir()
    monkeypatch.setattr(scaffold, "_root", lambda: root)
    return root


def test_list_templates(templates: Path) -> None:
    assert scaffold.list_templates() == [scaffold.TemplateInfo("mini", "A tiny template.")]


def test_render_maps_names_and_substitutes(templates: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "My Project"
    result = scaffold.render_template("mini", dest)
    assert sorted(result.files) == [".github/workflows/ci.yml", "README.md", "pkg/main.py"]
    assert result.name == "my-project"
    assert (dest / ".github/workflows/ci.yml").read_text() == "name: my-project ci\n"
    text = (dest / "pkg/main.py").read_text()
    assert "PACKAGE = 'my_project'" in text and "{{" not in text
    assert "${{ github.sha }} stays" in (dest / "README.md").read_text()
    assert not list(dest.rglob("*.mlctl-tmp"))


def test_name_option_wins(templates: Path, tmp_path: Path) -> None:
    result = scaffold.render_template("mini", tmp_path / "x", name="Fraud API")
    assert result.name == "fraud-api"
    assert (tmp_path / "x/README.md").read_text().startswith("# fraud-api")


def test_non_empty_directory_needs_force(templates: Path, tmp_path: Path) -> None:
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    (dest / "README.md").write_text("old")
    with pytest.raises(UsageError, match="is not empty") as info:
        scaffold.render_template("mini", dest)
    assert "--force" in (info.value.hint or "")
    assert (dest / "README.md").read_text() == "old"
    result = scaffold.render_template("mini", dest, force=True)
    assert result.overwritten == ["README.md"]
    assert (dest / "keep.txt").read_text() == "mine"
    assert (dest / "README.md").read_text().startswith("# full")


def test_dry_run_writes_nothing(templates: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dry"
    result = scaffold.render_template("mini", dest, dry_run=True)
    assert result.dry_run and len(result.files) == 3
    assert not dest.exists()


@pytest.mark.parametrize("bad", ["../mini", "mini/..", "UPPER", "", "a b"])
def test_invalid_template_names(templates: Path, tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="invalid template name"):
        scaffold.render_template(bad, tmp_path / "d")


def test_unknown_template_lists_known(templates: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="unknown template 'nope'") as info:
        scaffold.render_template("nope", tmp_path / "d")
    assert info.value.hint == "available templates: mini"
    with pytest.raises(NotFound):
        scaffold.render_template("not-a-template", tmp_path / "d")


def test_files_outside_dest_are_refused(templates: Path, tmp_path: Path) -> None:
    evil = templates / "mini" / "dot-."
    evil.mkdir()
    (evil / "escape.txt").write_text("x")
    with pytest.raises(UsageError, match="outside"):
        scaffold.render_template("mini", tmp_path / "a" / "b")
    assert not (tmp_path / "a" / "escape.txt").exists()


def test_dest_is_a_file(templates: Path, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        scaffold.render_template("mini", f)


@pytest.mark.parametrize(("raw", "name", "package"), [
    ("My Service", "my-service", "my_service"),
    ("9lives", "9lives", "p_9lives"),
    ("  --a__b--  ", "a-b", "a_b"),
])
def test_project_identifiers(raw: str, name: str, package: str) -> None:
    assert scaffold.project_identifiers(raw) == (name, package)


def test_project_identifiers_rejects_symbols_only() -> None:
    with pytest.raises(UsageError, match="cannot derive a project name"):
        scaffold.project_identifiers("!!!")


def test_shipped_templates_have_descriptions() -> None:
    shipped = scaffold.list_templates()
    assert "service" in {t.name for t in shipped}
    assert all(t.description for t in shipped)
