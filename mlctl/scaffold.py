"""Project scaffolds: ``mlctl init [TEMPLATE] DIR``.

A template is a folder ``templates/<name>/`` shipped inside the package. It holds a
``template.yaml`` (``description:``, one line) and the files to render:

* a path component starting with ``dot-`` becomes ``.`` + the rest
  (``dot-github/workflows/ci.yml`` -> ``.github/workflows/ci.yml``);
* a trailing ``.tmpl`` is stripped (template Python code is never importable in mlctl);
* ``{{ name }}``, ``{{ package }}`` and ``{{ mlctl_version }}`` are substituted.

The project name is a DNS-1123 label (``a-z``, ``0-9``, ``-``): accented letters lose their
accents (``prój`` -> ``proj``), letters with no ASCII form are dropped, and ``note`` is told the
name used whenever it differs from the one given. Files are written all or nothing: conflicts are
found before anything is written, and a failure part-way restores what was there.

>>> project_identifiers("Fraud API")
('fraud-api', 'fraud_api')
>>> project_identifiers("Prój ét Straße")
('proj-et-strasse', 'proj_et_strasse')
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

from mlctl import __version__
from mlctl.core.errors import NotFound, OperationFailed, UsageError
from mlctl.core.output import Result, Table

_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{\{\s*(name|package|mlctl_version)\s*\}\}")
_META = "template.yaml"


@dataclass(frozen=True)
class TemplateInfo:
    """One available template."""

    name: str
    description: str


class TemplateList(Result):
    """``mlctl init --list``: every template, one row each."""

    title = "templates"
    columns = ("name", "description")

    def __init__(self, templates: list[TemplateInfo]) -> None:
        self.templates = templates

    def document(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description} for t in self.templates]


@dataclass
class ScaffoldResult(Result):
    """What ``render_template`` wrote (or would write, under ``dry_run``)."""

    template: str
    directory: str
    name: str
    files: list[str] = field(default_factory=list)
    dry_run: bool = False
    overwritten: list[str] = field(default_factory=list)
    given: str = field(default="", repr=False, compare=False)  # the folder as typed, for the next-step hint

    def document(self) -> dict[str, Any]:
        return {"template": self.template, "directory": self.directory, "name": self.name, "files": list(self.files),
                "dry_run": self.dry_run, "overwritten": list(self.overwritten)}

    def tables(self) -> list[Table]:
        verb = "would write" if self.dry_run else "wrote"
        return [Table([{"file": f} for f in self.files], title=f"{verb} {len(self.files)} files")]

    def notes(self) -> list[str]:
        if self.dry_run:
            return []
        return [f"Created {self.directory}. Next: cd {self.given or self.directory} && mlctl status"]


def _root() -> Traversable:
    return resources.files("mlctl.templates")


def list_templates() -> list[TemplateInfo]:
    """Every template shipped with mlctl, sorted by name."""
    import yaml

    out = []
    for entry in _root().iterdir():
        meta = entry / _META
        if entry.is_dir() and meta.is_file():
            data = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
            out.append(TemplateInfo(entry.name, str(data.get("description", "")).strip()))
    return sorted(out, key=lambda t: t.name)


#: letters that Unicode decomposition leaves as they are, spelt the usual way in ASCII
_LETTERS = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ł": "l", "ı": "i", "ħ": "h"}
_NAME_MAX = 63


@dataclass(frozen=True)
class _Slug:
    name: str
    accents: bool  # some letters lost their accents (é -> e)
    spelt: bool  # some letters or signs were spelt in ASCII (ß -> ss, ﬁ -> fi)
    dropped: str  # letters or digits with no ASCII form, left out
    truncated: bool


def _slug(raw: str) -> _Slug:
    out: list[str] = []
    accents = spelt = False
    dropped: list[str] = []
    for ch in raw.strip().lower():
        if ch.isascii():
            out.append(ch)
        elif unicodedata.combining(ch):
            accents = True  # a lone accent: it goes
        elif ch in _LETTERS:
            out.append(_LETTERS[ch])
            spelt = True
        else:
            parts = unicodedata.normalize("NFKD", ch)
            base = "".join(c for c in parts if not unicodedata.combining(c))
            if base and base.isascii():  # é -> e, ﬁ -> fi
                out.append(base.lower())
                if base == parts:
                    spelt = True
                else:
                    accents = True
            elif ch.isalnum():  # 数, ж: no ASCII form
                dropped.append(ch)
                out.append(" ")
            else:  # punctuation and spaces of other scripts separate words
                out.append(" ")
    full = re.sub(r"[^a-z0-9]+", "-", "".join(out)).strip("-")
    name = full[:_NAME_MAX].strip("-")
    return _Slug(name, accents, spelt, "".join(dict.fromkeys(dropped)), len(full) > _NAME_MAX)


def project_identifiers(raw: str) -> tuple[str, str]:
    """``(name, package)``: a DNS-1123 project name and a Python package name."""
    name = _slug(raw).name
    if not name:
        raise UsageError(
            f"cannot derive a project name from {raw!r}: it has no letters or digits a project name can use",
            hint="pass --name with letters or digits a-z, 0-9, e.g. --name my-service",
        )
    package = name.replace("-", "_")
    if package[0].isdigit():
        package = "p_" + package
    return name, package


def name_note(raw: str) -> str | None:
    """What became of ``raw`` as a project name, when the name is not ``raw`` itself.

    >>> name_note("prój ét 数据")
    "project name 'proj-et' (from 'prój ét 数据': accents removed; '数据' dropped, no ASCII form)"
    >>> name_note("fraud-api") is None
    True
    """
    slug = _slug(raw)
    if not slug.name or slug.name == raw:
        return None
    why = []
    if slug.accents:
        why.append("accents removed")
    if slug.spelt:
        why.append("letters spelt in ASCII")
    if slug.dropped:
        why.append(f"{slug.dropped!r} dropped, no ASCII form")
    if slug.truncated:
        why.append(f"cut to {_NAME_MAX} characters")
    if not why:
        why.append("lowercase letters, digits and '-' only")
    return f"project name {slug.name!r} (from {raw!r}: {'; '.join(why)})"


def _template_dir(template: str) -> Traversable:
    if not _TEMPLATE_NAME.match(template):
        raise UsageError(
            f"invalid template name {template!r}",
            hint="template names are lowercase letters, digits, '-' or '_'; see `mlctl init --list`",
        )
    folder = _root() / template
    if not (folder.is_dir() and (folder / _META).is_file()):
        known = ", ".join(t.name for t in list_templates()) or "none"
        raise NotFound(f"unknown template {template!r}", hint=f"available templates: {known}")
    return folder


def _walk(folder: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, Traversable]]:
    found: list[tuple[PurePosixPath, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name in ("__pycache__", _META) and prefix == PurePosixPath("."):
            continue
        if entry.name == "__pycache__" or entry.name.endswith((".pyc", ".pyo")):
            continue
        rel = prefix / entry.name
        if entry.is_dir():
            found.extend(_walk(entry, rel))
        else:
            found.append((rel, entry))
    return found


def _output_path(rel: PurePosixPath) -> PurePosixPath:
    parts = ["." + p[4:] if p.startswith("dot-") else p for p in rel.parts if p != "."]
    if parts and parts[-1].endswith(".tmpl"):
        parts[-1] = parts[-1][: -len(".tmpl")]
    return PurePosixPath(*parts)


def _inside(dest: Path, rel: PurePosixPath) -> Path:
    target = (dest / rel).resolve()
    if target != dest and dest not in target.parents:
        raise UsageError(f"template file {rel} would be written outside {dest}")
    return target


def _check_conflicts(dest: Path, plan: list[tuple[PurePosixPath, Path, Traversable]]) -> None:
    """Refuse, before writing anything, a template file whose place is taken by a folder, or whose
    folder is taken by a file."""
    for out_rel, target, _ in plan:
        for folder in reversed(target.relative_to(dest).parents):
            here = dest / folder
            if here.exists() and not here.is_dir():
                raise UsageError(f"cannot write {out_rel}: {here} is a file, not a folder",
                                 hint="move it out of the way, or choose another directory")  # fmt: skip
        if target.exists() and not target.is_file():
            kind = "a folder" if target.is_dir() else "not a regular file"
            raise UsageError(f"cannot write {out_rel}: {target} is {kind}",
                             hint="move it out of the way, or choose another directory")  # fmt: skip


def _write_all(dest: Path, files: list[tuple[Path, str]]) -> None:
    """Write every file or none: on any failure (Ctrl-C included) the files written are removed,
    the files overwritten are restored, and the folders created are removed again."""
    created = [p for p in (dest, *dest.parents) if not p.exists()]  # deepest first
    written: list[tuple[Path, Path | None]] = []  # (target, backup of what it replaced)
    tmp: Path | None = None
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for target, text in files:
            missing = [p for p in target.parents if p != dest and dest in p.parents and not p.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                created.insert(0, folder)
            tmp = target.with_name(f".{target.name}.mlctl-tmp")
            tmp.write_text(text, encoding="utf-8")
            backup = None
            if target.exists():
                backup = target.with_name(f".{target.name}.mlctl-bak")
                os.replace(target, backup)
            written.append((target, backup))
            os.replace(tmp, target)
            tmp = None
    except BaseException:
        _undo(written, created, tmp)
        raise
    for _, backup in written:
        if backup is not None:
            backup.unlink(missing_ok=True)


def _undo(written: list[tuple[Path, Path | None]], created: list[Path], tmp: Path | None) -> None:
    if tmp is not None:
        tmp.unlink(missing_ok=True)
    for target, backup in reversed(written):
        try:
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        except OSError:
            pass  # best effort: keep undoing the rest
    for folder in created:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (something else is in it) or gone already


def render_template(
    template: str,
    dest: Path,
    *,
    name: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    note: Callable[[str], None] | None = None,
) -> ScaffoldResult:
    """Render ``template`` into ``dest``.

    Refuses a non-empty ``dest`` unless ``force`` (then files are overwritten, nothing
    else is deleted), and any file that would land outside ``dest``. Writes all files or none.
    ``note`` is told the project name used when it differs from the one given (or the folder's).
    """
    folder = _template_dir(template)
    given = str(dest)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory")
    blocking = next((p for p in Path(os.path.abspath(dest)).parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UsageError(f"cannot create {dest}: {blocking} is a file, not a folder")
    dest = dest.resolve()
    raw_name = name or dest.name
    project_name, package = project_identifiers(raw_name)
    existing = dest.is_dir() and any(dest.iterdir())
    if existing and not force:
        raise UsageError(
            f"directory {dest} is not empty",
            hint="choose an empty directory, or pass --force to overwrite template files in it",
        )
    values = {"name": project_name, "package": package, "mlctl_version": __version__}
    plan: list[tuple[PurePosixPath, Path, Traversable]] = []
    for rel, entry in _walk(folder, PurePosixPath(".")):
        out_rel = _output_path(rel)
        plan.append((out_rel, _inside(dest, out_rel), entry))
    _check_conflicts(dest, plan)
    result = ScaffoldResult(template, str(dest), project_name, dry_run=dry_run, given=given)
    for out_rel, target, _ in plan:
        result.files.append(str(out_rel))
        if target.exists():
            result.overwritten.append(str(out_rel))
    if note is not None and (text := name_note(raw_name)) is not None:
        note(text)
    if dry_run:
        return result
    files = [(target, _PLACEHOLDER.sub(lambda m: values[m.group(1)], entry.read_text(encoding="utf-8")))
             for _, target, entry in plan]  # fmt: skip
    try:
        _write_all(dest, files)
    except PermissionError as exc:
        raise OperationFailed(
            f"cannot write to {exc.filename or dest}: permission denied",
            hint="choose a directory you can write to",
        ) from exc
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OperationFailed(f"cannot write the project into {dest}: {exc.strerror or exc}{where}; "
                              "nothing was changed") from exc  # fmt: skip
    return result
