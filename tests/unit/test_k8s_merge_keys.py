"""mlctl's strategic-merge table against the Kubernetes OpenAPI document, an independent source.

mlctl keeps its own table (``MERGE_KEYS`` in ``mlctl/lifecycle/deploy/k8s_manifests.py``), so its
runtime needs no schemas. These tests hold that table to the ``x-kubernetes-patch-merge-key`` and
``x-kubernetes-patch-strategy`` fields of the schemas kubernetes-validate ships for the Kubernetes
version the tests target (read by :mod:`tests.support.k8s_openapi`): every entry has the key and
the strategy the API types give that path, and every list of the patched kinds that the API
merges is either in the table or named below as one mlctl never sends, which the rendered
manifests confirm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
from mlctl.lifecycle.deploy.k8s_manifests import MERGE_KEYS, render_manifests
from tests.support import k8s_openapi as openapi

Table = dict[str, dict[str, tuple[str, str]]]

_POD = "spec.template.spec"
_META = ("metadata.finalizers", "metadata.ownerReferences")  # set by controllers and the garbage collector

#: Lists the API merges (by a key, or as a set of scalars) that mlctl never sends: its table leaves
#: them out. ``status`` is written by controllers; a patch of the main resource ignores it.
NOT_SENT: dict[str, set[str]] = {
    "Deployment": {
        *_META,
        *(f"spec.template.{m}" for m in _META),
        f"{_POD}.containers[].volumeDevices",
        f"{_POD}.initContainers[].volumeDevices",
        f"{_POD}.ephemeralContainers",  # may not be set in a pod template
        *(f"{_POD}.ephemeralContainers[].{f}" for f in ("env", "ports", "volumeMounts", "volumeDevices")),
        f"{_POD}.hostAliases",
        f"{_POD}.resourceClaims",
        f"{_POD}.schedulingGates",
        f"{_POD}.topologySpreadConstraints",
        *(f"{_POD}.volumes[].ephemeral.volumeClaimTemplate.{m}" for m in _META),
        "status.conditions",
    },
    "Service": {*_META, "status.conditions"},
    "HorizontalPodAutoscaler": {*_META, "status.conditions"},
}

#: Structs (not lists) with a patch strategy: ``retainKeys`` clears the fields a patch leaves out.
#: mlctl needs no ``$retainKeys`` for them: its patch nulls every key it applied last time and no
#: longer wants (RollingUpdate -> Recreate nulls ``rollingUpdate``).
RETAIN_KEYS_STRUCTS = {"Deployment": {"spec.strategy"}, "Service": set(), "HorizontalPodAutoscaler": set()}


def _manifests() -> list[dict[str, Any]]:
    """Every object mlctl applies, with every option that adds fields (env, an HPA on CPU and memory)."""
    model = ModelArtifact("fraud", "3", "champion", Path("/models/fraud.skops"), "ab" * 32)
    spec = DeploySpec("fraud-api", model, replicas=2, env={"FLAG": "1"})
    hpa = {"min_replicas": 2, "max_replicas": 4, "cpu_utilization": 70, "memory_utilization": 80}
    return render_manifests(spec, image="fraud:3", namespace="ml", hpa=hpa)


API_VERSIONS = {m["kind"]: m["apiVersion"] for m in _manifests()}


def _schema_fields(kind: str) -> dict[str, openapi.Field]:
    return openapi.patch_fields(openapi.for_kind(API_VERSIONS[kind], kind))


def _mismatches(table: Table) -> list[str]:
    """Entries of ``table`` whose path, merge key or strategy the OpenAPI document does not give."""
    problems = []
    for kind, entries in table.items():
        fields = _schema_fields(kind)
        for path, (key, strategy) in sorted(entries.items()):
            found = fields.get(path)
            if found is None or not found.is_list:
                problems.append(f"{kind} {path}: no list with a patch strategy at this path")
            elif (found.merge_key, found.strategy) != (key, strategy):
                problems.append(
                    f"{kind} {path}: mlctl says key {key!r} strategy {strategy!r}, "
                    f"the API says key {found.merge_key!r} strategy {found.strategy!r}"
                )
    return problems


def _sent_lists(value: Any, path: str = "") -> set[str]:
    """The paths of every list in a manifest, ``[]`` stepping into a list's elements."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out |= _sent_lists(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        out.add(path)
        for item in value:
            out |= _sent_lists(item, f"{path}[]")
    return out


def test_the_table_covers_exactly_the_kinds_mlctl_applies() -> None:
    assert set(MERGE_KEYS) == set(API_VERSIONS) == set(NOT_SENT) == {"Deployment", "Service", "HorizontalPodAutoscaler"}


@pytest.mark.parametrize(
    ("kind", "path"), sorted((kind, path) for kind, entries in MERGE_KEYS.items() for path in entries)
)
def test_each_entry_has_the_merge_key_and_strategy_of_the_openapi_document(kind: str, path: str) -> None:
    problems = _mismatches({kind: {path: MERGE_KEYS[kind][path]}})
    assert not problems, problems[0] if problems else ""


def test_a_wrong_key_or_strategy_or_path_is_caught() -> None:
    wrong = {
        "Deployment": {
            **MERGE_KEYS["Deployment"],
            f"{_POD}.containers[].ports": ("port", "merge"),  # the Service's key, not the container's
            f"{_POD}.volumes": ("name", "merge"),  # retainKeys left out
            f"{_POD}.containers[].command": ("name", "merge"),  # an atomic list
        },
        "Service": {"spec.ports": ("name", "merge")},
    }
    problems = "\n".join(_mismatches(wrong))
    for fragment in ("containers[].ports: mlctl says key 'port'", "volumes: mlctl says", "command: no list"):
        assert fragment in problems
    assert "Service spec.ports: mlctl says key 'name' strategy 'merge', the API says key 'port'" in problems


@pytest.mark.parametrize("kind", sorted(MERGE_KEYS))
def test_every_merged_list_is_in_the_table_or_never_sent(kind: str) -> None:
    merged = {path for path, field in _schema_fields(kind).items() if field.merges}
    table, not_sent = set(MERGE_KEYS[kind]), NOT_SENT[kind]
    assert not table & not_sent
    assert sorted(merged - table - not_sent) == [], "lists the API merges, in neither the table nor NOT_SENT"
    assert sorted(not_sent - merged) == [], "NOT_SENT names lists the API does not merge (stale?)"


@pytest.mark.parametrize("kind", sorted(MERGE_KEYS))
def test_mlctl_sends_no_list_it_says_it_never_sends(kind: str) -> None:
    (manifest,) = [m for m in _manifests() if m["kind"] == kind]
    sent = _sent_lists(manifest)
    assert not sent & NOT_SENT[kind]
    merged = {path for path, field in _schema_fields(kind).items() if field.merges}
    assert sorted((sent & merged) - set(MERGE_KEYS[kind])) == []  # every merged list it sends has its key


@pytest.mark.parametrize("kind", sorted(MERGE_KEYS))
def test_structs_with_a_patch_strategy_are_known(kind: str) -> None:
    structs = {path for path, field in _schema_fields(kind).items() if not field.is_list}
    assert structs == RETAIN_KEYS_STRUCTS[kind]
    assert all(_schema_fields(kind)[path].strategy == "retainKeys" for path in structs)
