"""How a strategic merge patch treats each field of the Kubernetes API types, from an independent source.

The real API server merges a strategic merge patch by the ``patchStrategy`` and ``patchMergeKey``
tags of its Go types; the Kubernetes OpenAPI document publishes them on each field as
``x-kubernetes-patch-strategy`` (``merge``, ``retainKeys`` or both) and
``x-kubernetes-patch-merge-key``. PyPI ``kubernetes-validate`` (a test dependency) ships JSON
schemas derived from that document, one ``_definitions.json`` per Kubernetes version; this module
reads them and follows ``$ref`` from a kind to the types of its fields and of its lists' elements.

The API test server (:mod:`tests.support.kube_apiserver`) merges patches with it, and
``tests/unit/test_k8s_merge_keys.py`` checks mlctl's own table against it, so neither rests on a
hand-copied table.

>>> pod = for_kind("v1", "Pod").field("spec").type
>>> pod.field("containers").merge_key, pod.field("volumes").strategy, pod.field("tolerations").merges
('name', 'merge,retainKeys', False)
>>> for_kind("v1", "Service").field("spec").type.field("ports").merge_key
'port'
>>> patch_fields(for_kind("autoscaling/v2", "HorizontalPodAutoscaler"))["status.conditions"].merge_key
'type'
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The Kubernetes version whose schemas are read (the API test server reports the same one).
KUBERNETES_VERSION = "1.32"

__all__ = ["KUBERNETES_VERSION", "Field", "Type", "definition", "for_kind", "patch_fields"]


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@functools.cache
def _schema_dir(version: str) -> Path:
    """``v<X.Y.Z>-local`` for the newest version kubernetes-validate ships not newer than ``version``."""
    spec = importlib.util.find_spec("kubernetes_validate")  # found, not imported: only its data is read
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the test dependency kubernetes-validate is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    shipped = {m.group(1): p for p in root.iterdir() if (m := re.fullmatch(r"v(\d+\.\d+)\.\d+-local", p.name))}
    usable = [v for v in shipped if _version_key(v) <= _version_key(version)]
    if not usable:
        raise RuntimeError(f"kubernetes-validate ships no schemas for Kubernetes {version} or older")
    return shipped[max(usable, key=_version_key)]


@functools.cache
def _definitions(version: str) -> dict[str, Any]:
    text = (_schema_dir(version) / "_definitions.json").read_text(encoding="utf-8")
    definitions: dict[str, Any] = json.loads(text)["$defs"]
    return definitions


@functools.cache
def _kinds(version: str) -> dict[tuple[str, str], str]:
    """``(apiVersion, kind)`` -> definition name, from ``x-kubernetes-group-version-kind``."""
    out: dict[tuple[str, str], str] = {}
    for name, schema in _definitions(version).items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            out.setdefault((api_version, gvk["kind"]), name)
    return out


def _ref(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


@dataclass(frozen=True)
class Field:
    """One field of a type: its patch strategy and merge key, and the type of its value (or elements)."""

    name: str
    strategy: str  # "", "merge", "retainKeys" or "merge,retainKeys", as the OpenAPI document says
    merge_key: str | None
    is_list: bool
    type: Type | None  # None: a scalar, a map of scalars or free-form

    @property
    def merges(self) -> bool:
        """A list merged (by ``merge_key``, or as a set of scalars without one) rather than replaced."""
        return self.is_list and "merge" in self.strategy.split(",")


@dataclass(frozen=True)
class Type:
    """One definition of the OpenAPI document (``io.k8s.api.core.v1.PodSpec``...)."""

    name: str
    version: str = KUBERNETES_VERSION

    def _properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = _definitions(self.version)[self.name].get("properties") or {}
        return properties

    def field(self, name: str) -> Field | None:
        """The field ``name``, or None when the type has no such field."""
        return _field(self.name, self.version, name)

    def fields(self) -> Iterator[Field]:
        for name in self._properties():
            found = self.field(name)
            if found is not None:
                yield found


@functools.cache
def _field(type_name: str, version: str, name: str) -> Field | None:
    prop = (_definitions(version)[type_name].get("properties") or {}).get(name)
    if prop is None:
        return None
    kinds = prop.get("type") or []
    is_list = "array" in (kinds if isinstance(kinds, list) else [kinds])
    target = _ref(prop.get("items") or {}) if is_list else _ref(prop)
    has_fields = target is not None and bool(_definitions(version)[target].get("properties"))
    return Field(
        name=name,
        strategy=prop.get("x-kubernetes-patch-strategy", ""),
        merge_key=prop.get("x-kubernetes-patch-merge-key"),
        is_list=is_list,
        type=Type(target, version) if has_fields and target is not None else None,
    )


def definition(name: str, version: str = KUBERNETES_VERSION) -> Type:
    """The type named ``name`` (``io.k8s.api.core.v1.PodSpec``)."""
    if name not in _definitions(version):
        raise KeyError(f"no definition {name!r} in the Kubernetes {version} schemas")
    return Type(name, version)


def for_kind(api_version: str, kind: str, version: str = KUBERNETES_VERSION) -> Type:
    """The type of the objects of one kind: ``for_kind("apps/v1", "Deployment")``."""
    name = _kinds(version).get((api_version, kind))
    if name is None:
        raise KeyError(f"no kind {kind} in {api_version} in the Kubernetes {version} schemas")
    return Type(name, version)


def patch_fields(root: Type) -> dict[str, Field]:
    """Every field with a patch strategy reachable from ``root``, by path.

    Paths are dotted from the object's root, ``[]`` stepping into a list's elements:
    ``spec.template.spec.containers[].env``. A recursive type is followed once along each path.
    """
    found: dict[str, Field] = {}

    def walk(node: Type, prefix: str, seen: frozenset[str]) -> None:
        for field in node.fields():
            path = f"{prefix}{field.name}"
            if field.strategy:
                found[path] = field
            if field.type is not None and field.type.name not in seen:
                walk(field.type, f"{path}[]." if field.is_list else f"{path}.", seen | {field.type.name})

    walk(root, "", frozenset({root.name}))
    return found
