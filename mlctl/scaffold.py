"""Project scaffolds: ``mlctl init [TEMPLATE] DIR``.

A template is a folder ``templates/<name>/`` shipped inside the package. It holds a
``template.yaml`` (``description:``, one line) and the files to render:

* a path component starting with ``dot-`` becomes ``.`` + the rest
  (``dot-github/workflows/ci.yml`` -> ``.github/workflows/ci.yml``);
* a trailing ``.tmpl`` is stripped (template Python code is never importable in mlctl);
* ``{{ name }}``, ``{{ package }}`` and ``{{ mlctl_version }}`` are substituted.

>>> project_identifiers("Fraud API")
('fraud-api', 'fraud_api')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from mlctl import __version__
from mlctl.core.errors import NotFound, OperationFailed, UsageError

_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{\{\s*(name|package|mlctl_version)\s*\}\}")
_META = "template.yaml"


@dataclass(frozen=True)
class TemplateInfo:
    """One available template."""

    name: str
    description: str


@dataclass
class ScaffoldResult:
    """What ``render_template`` wrote (or would write, under ``dry_run``)."""

    template: str
    directory: str
    name: str
    files: list[str] = field(default_factory=list)
    dry_run: bool = False
    overwritten: list[str] = field(default_factory=list)


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


def project_identifiers(raw: str) -> tuple[str, str]:
    """``(name, package)``: a DNS-1123 project name and a Python package name."""
    name = re.sub(r"[^a-z0-9]+", "-", raw.strip().lower()).strip("-")[:63].strip("-")
    if not name:
        raise UsageError(
            f"cannot derive a project name from {raw!r}",
            hint="pass --name with letters or digits, e.g. --name my-service",
        )
    package = name.replace("-", "_")
    if package[0].isdigit():
        package = "p_" + package
    return name, package


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


def render_template(
    template: str,
    dest: Path,
    *,
    name: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> ScaffoldResult:
    """Render ``template`` into ``dest``.

    Refuses a non-empty ``dest`` unless ``force`` (then files are overwritten, nothing
    else is deleted), and any file that would land outside ``dest``.
    """
    folder = _template_dir(template)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory")
    dest = dest.resolve()
    project_name, package = project_identifiers(name or dest.name)
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
    result = ScaffoldResult(template, str(dest), project_name, dry_run=dry_run)
    for out_rel, target, _ in plan:
        result.files.append(str(out_rel))
        if target.exists():
            result.overwritten.append(str(out_rel))
    if dry_run:
        return result
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for _, target, entry in plan:
            text = entry.read_text(encoding="utf-8")
            text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.mlctl-tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
    except PermissionError as exc:
        raise OperationFailed(
            f"cannot write to {exc.filename or dest}: permission denied",
            hint="choose a directory you can write to",
        ) from exc
    except OSError as exc:
        raise OperationFailed(f"cannot write the project into {dest}: {exc.strerror or exc}") from exc
    return result
