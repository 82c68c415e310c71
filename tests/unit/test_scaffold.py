from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlctl import scaffold
from mlctl.core.errors import NotFound, OperationFailed, UsageError


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


@pytest.mark.parametrize(("raw", "name", "note"), [
    ("prój ét 数据", "proj-et",
     "project name 'proj-et' (from 'prój ét 数据': accents removed; '数据' dropped, no ASCII form)"),
    ("Straße Øre", "strasse-ore", "project name 'strasse-ore' (from 'Straße Øre': letters spelt in ASCII)"),
    ("Ｆｉｌé", "file", "project name 'file' (from 'Ｆｉｌé': accents removed; letters spelt in ASCII)"),
    ("Risk Scorer", "risk-scorer",
     "project name 'risk-scorer' (from 'Risk Scorer': lowercase letters, digits and '-' only)"),
    ("x" * 70, "x" * 63, f"project name '{'x' * 63}' (from '{'x' * 70}': cut to 63 characters)"),
    ("fraud-api", "fraud-api", None),
])
def test_unicode_names_are_transliterated_and_explained(raw: str, name: str, note: str | None) -> None:
    assert scaffold.project_identifiers(raw)[0] == name
    assert scaffold.name_note(raw) == note


@pytest.mark.parametrize("raw", ["数据", "!!!", "——", "\u0301"])
def test_a_name_with_nothing_usable_is_refused(raw: str, templates: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot derive a project name") as info:
        scaffold.render_template("mini", tmp_path / "d", name=raw)
    assert info.value.exit_code == 2 and "--name" in (info.value.hint or "")
    assert not (tmp_path / "d").exists()


def test_render_tells_the_name_used(templates: Path, tmp_path: Path) -> None:
    notes: list[str] = []
    result = scaffold.render_template("mini", tmp_path / "prój ét 数据", note=notes.append)
    assert result.name == "proj-et"
    assert notes == ["project name 'proj-et' (from 'prój ét 数据': accents removed; '数据' dropped, no ASCII form)"]
    assert (tmp_path / "prój ét 数据" / "README.md").read_text().startswith("# proj-et")
    notes.clear()
    scaffold.render_template("mini", tmp_path / "plain", note=notes.append)
    assert notes == []


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "<dir>") for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("blocker", "message"), [
    ("pkg", r"cannot write pkg/main.py: .*/pkg is a file, not a folder"),
    ("README.md/", r"cannot write README.md: .*/README.md is a folder"),
])
def test_force_refuses_conflicts_before_writing_anything(templates: Path, tmp_path: Path, blocker: str,
                                                         message: str) -> None:
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    if blocker.endswith("/"):
        (dest / blocker).mkdir()
    else:
        (dest / blocker).write_text("a file")
        (dest / "README.md").write_text("old")
    before = _snapshot(dest)
    with pytest.raises(UsageError, match=message):
        scaffold.render_template("mini", dest, force=True)
    assert _snapshot(dest) == before


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failure_part_way_leaves_everything_as_it_was(templates: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    dest = tmp_path / "busy"
    (dest / "pkg").mkdir(parents=True)
    (dest / "README.md").write_text("old")
    (dest / "keep.txt").write_text("mine")
    before = _snapshot(dest)
    real_replace = os.replace
    calls = []

    def flaky(src: str | Path, dst: str | Path) -> None:
        calls.append(dst)
        if str(dst).endswith("main.py"):  # the last file: README.md and the CI file are in place by then
            raise error
        real_replace(src, dst)

    monkeypatch.setattr(scaffold.os, "replace", flaky)
    with pytest.raises(OperationFailed if isinstance(error, OSError) else KeyboardInterrupt):
        scaffold.render_template("mini", dest, force=True)
    assert any(str(c).endswith("README.md") for c in calls)
    monkeypatch.setattr(scaffold.os, "replace", real_replace)
    assert _snapshot(dest) == before  # README.md restored, nothing new, no temporary or backup file


def test_a_failed_fresh_render_removes_the_folders_it_created(templates: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def full(src: str | Path, dst: str | Path) -> None:
        if str(dst).endswith("main.py"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(scaffold.os, "replace", full)
    with pytest.raises(OperationFailed, match=r"No space left on device .*main.py.*nothing was changed"):
        scaffold.render_template("mini", tmp_path / "new" / "proj")
    assert not (tmp_path / "new").exists()


def test_dest_below_a_file_is_refused(templates: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"cannot create .*notes.txt/proj: .*notes.txt is a file, not a folder"):
        scaffold.render_template("mini", tmp_path / "notes.txt" / "proj")
