"""The k8s target's patches carry a resourceVersion precondition (issue 8): a Deployment changed by
someone else between mlctl's read and its patch is refused (409), never silently merged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from mlctl.core.errors import OperationFailed, exit_code_for
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
from mlctl.lifecycle.deploy.k8s import K8sTarget


def _spec(version: str) -> DeploySpec:
    model = ModelArtifact(name="fraud", version=version, alias=None, path=Path(f"/models/fraud-{version}.skops"),
                          sha256=(version * 64)[:64])
    return DeploySpec(name="fraud-api", model=model)


@pytest.fixture
def target(kube_api: Any, ns: str) -> Iterator[K8sTarget]:
    tgt = K8sTarget(None, ns, kubeconfig=str(kube_api.kubeconfig), timeout_s=30, poll_interval_s=0.1)
    yield tgt
    tgt.close()


def test_a_deployment_changed_between_read_and_patch_is_refused(target: K8sTarget, api: Any, ns: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    apps = client.AppsV1Api(api)
    target.apply(_spec("1"))
    read = target._read
    writes = []

    def read_then_someone_writes(what: str, fn: Any, name: str, namespace: str) -> Any:
        current = read(what, fn, name, namespace)
        if what.startswith("read Deployment") and current is not None:  # another client writes right after
            writes.append(what)
            label = {"touched-by": f"someone-{len(writes)}"}  # a real change every time
            apps.patch_namespaced_deployment(name, namespace, {"metadata": {"labels": label}})
        return current

    monkeypatch.setattr(target, "_read", read_then_someone_writes)
    with pytest.raises(OperationFailed, match=r"Deployment .*/fraud-api was changed by someone else while this "
                                              r"deploy ran") as exc:
        target.apply(_spec("2"))
    assert exit_code_for(exc.value) == 1 and exc.value.details["status"] == 409
    monkeypatch.undo()
    deployment = apps.read_namespaced_deployment("fraud-api", ns)
    assert "fraud:1" in deployment.spec.template.spec.containers[0].image  # version 2 was not merged in
    assert target.apply(_spec("2")).version == "2"  # run again: applies on the current version


def test_a_status_update_between_read_and_patch_is_not_a_conflict(target: K8sTarget, api: Any, ns: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollout in progress moves the object's status (and resourceVersion) all the time: the patch is
    computed again on the fresh object instead of failing the deploy."""
    apps = client.AppsV1Api(api)
    target.apply(_spec("1"))
    read = target._read
    writes = []

    def read_then_status_moves(what: str, fn: Any, name: str, namespace: str) -> Any:
        current = read(what, fn, name, namespace)
        if what.startswith("read Deployment") and current is not None and not writes:
            writes.append(what)
            before = current.metadata.resource_version
            apps.patch_namespaced_deployment_status(name, namespace, {"status": {"collisionCount": 3}})
            assert apps.read_namespaced_deployment(name, namespace).metadata.resource_version != before
        return current

    monkeypatch.setattr(target, "_read", read_then_status_moves)
    assert target.apply(_spec("2")).version == "2"
    assert writes  # the status really moved between the read and the patch
    assert "fraud:2" in apps.read_namespaced_deployment("fraud-api", ns).spec.template.spec.containers[0].image


def test_scale_carries_the_precondition_too(target: K8sTarget, api: Any, ns: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``scale`` patches the scale subresource with the Deployment's resourceVersion: a spec changed
    by someone else in between is refused; a status that moved is not a conflict."""
    apps = client.AppsV1Api(api)
    target.apply(_spec("1"))
    read = target._read
    moves: list[str] = []

    def read_then(change: str) -> Any:
        def wrapped(what: str, fn: Any, name: str, namespace: str) -> Any:
            current = read(what, fn, name, namespace)
            if what.startswith("read Deployment") and current is not None and not moves:
                moves.append(change)
                if change == "spec":
                    apps.patch_namespaced_deployment(name, namespace, {"spec": {"minReadySeconds": 5}})
                else:
                    apps.patch_namespaced_deployment_status(name, namespace, {"status": {"collisionCount": 3}})
            return current
        return wrapped

    monkeypatch.setattr(target, "_read", read_then("spec"))
    with pytest.raises(OperationFailed, match=r"was changed by someone else while scaling it") as exc:
        target.scale("fraud-api", 3)
    assert exit_code_for(exc.value) == 1 and exc.value.details["status"] == 409
    assert apps.read_namespaced_deployment("fraud-api", ns).spec.replicas == 1  # not scaled

    moves.clear()
    monkeypatch.setattr(target, "_read", read_then("status"))
    assert target.scale("fraud-api", 2).replicas_ready == 2
    assert moves == ["status"] and apps.read_namespaced_deployment("fraud-api", ns).spec.replicas == 2


def test_scale_leaves_a_deployment_mlctl_did_not_create_alone(target: K8sTarget, api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "theirs"}
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "theirs", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
    with pytest.raises(OperationFailed, match="not created by mlctl"):
        target.scale("theirs", 3)
    assert apps.read_namespaced_deployment("theirs", ns).spec.replicas == 1
