"""The k8s deploy target through the official client, against the Kubernetes API test server.

Each test works in a namespace of its own. The last test runs against a real cluster, only when
``MLCTL_TEST_REAL_KUBECONFIG`` names a kubeconfig that reaches one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from mlctl.core.errors import (
    EXIT_UNAVAILABLE,
    ConfigError,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
    UsageError,
    exit_code_for,
)
from mlctl.engines import free_port
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
from mlctl.lifecycle.deploy.k8s import K8sTarget
from tests.support.kube_apiserver import KubeAPI, write_kubeconfig


def _spec(version: str, *, name: str = "fraud-api", **kwargs: Any) -> DeploySpec:
    model = ModelArtifact(
        name="fraud",
        version=version,
        alias="champion" if version == "1" else "challenger",
        path=Path(f"/models/fraud-{version}.skops"),  # never read by the k8s target
        sha256=(version * 64)[:64],
    )
    return DeploySpec(name=name, model=model, **kwargs)


@pytest.fixture
def target(kube_api: KubeAPI, ns: str) -> Iterator[K8sTarget]:
    tgt = K8sTarget(None, ns, kubeconfig=str(kube_api.kubeconfig), timeout_s=30, poll_interval_s=0.1)
    yield tgt
    tgt.close()


def _deployment(api: Any, ns: str, name: str = "fraud-api") -> Any:
    return client.AppsV1Api(api).read_namespaced_deployment(name, ns)


def test_apply_waits_for_the_rollout_and_reports_status(target: K8sTarget, api: Any, ns: str) -> None:
    status = target.apply(_spec("1", replicas=2))
    assert (status.name, status.model, status.version, status.alias) == ("fraud-api", "fraud", "1", "champion")
    assert (status.replicas_desired, status.replicas_ready, status.health) == (2, 2, "healthy")
    assert status.endpoint == f"http://fraud-api.{ns}.svc:8000"
    assert status.digest == "mlctl/fraud:1"
    assert status.target == f"k8s:///{ns}"
    assert status.details["context"] == "kube-test"
    assert status.details["generation"] == status.details["observed_generation"] == 1
    assert status.details["revision"] == "1"

    pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app.kubernetes.io/instance=fraud-api")
    assert len(pods.items) == 2 and all(p.status.phase == "Running" for p in pods.items)
    assert target.status("fraud-api") == status
    assert target.status("no-such-thing") is None


def test_apply_is_idempotent(target: K8sTarget, api: Any) -> None:
    first = target.apply(_spec("1"))
    again = target.apply(_spec("1"))
    assert again.details["generation"] == first.details["generation"] == 1
    assert again.details["revision"] == "1"


def test_new_version_patches_merges_containers_and_rolls_out(target: K8sTarget, api: Any, ns: str) -> None:
    target.apply(_spec("1", replicas=2, env={"OLD_FLAG": "1"}))
    sidecar = {"name": "mesh-proxy", "image": "envoy:1.30"}  # injected by someone else, e.g. a service mesh
    client.AppsV1Api(api).patch_namespaced_deployment(
        "fraud-api", ns, {"spec": {"template": {"spec": {"containers": [sidecar]}}}}
    )
    before = _deployment(api, ns)

    status = target.apply(_spec("2", replicas=2, port=9000))
    after = _deployment(api, ns)
    assert after.metadata.generation > before.metadata.generation
    assert status.details["observed_generation"] == after.metadata.generation
    assert (status.version, status.digest, status.health) == ("2", "mlctl/fraud:2", "healthy")
    assert after.metadata.labels["app.kubernetes.io/version"] == "2"
    assert after.spec.template.metadata.labels["app.kubernetes.io/version"] == "2"
    containers = {c.name: c for c in after.spec.template.spec.containers}
    assert sorted(containers) == ["mesh-proxy", "model-server"]  # merged by name: the sidecar stays
    server = containers["model-server"]
    assert server.image == "mlctl/fraud:2"
    assert [p.container_port for p in server.ports] == [9000]  # the old port was removed, not kept
    assert "OLD_FLAG" not in {e.name for e in server.env or []}  # so was the env var dropped since
    service = client.CoreV1Api(api).read_namespaced_service("fraud-api", ns)
    assert [p.port for p in service.spec.ports] == [9000]
    assert status.endpoint == f"http://fraud-api.{ns}.svc:9000"


def test_scale_uses_the_scale_subresource_and_waits(target: K8sTarget, api: Any, ns: str) -> None:
    target.apply(_spec("1", replicas=1))
    status = target.scale("fraud-api", 3)
    assert (status.replicas_desired, status.replicas_ready, status.health) == (3, 3, "healthy")
    down = target.scale("fraud-api", 0)
    assert (down.replicas_desired, down.replicas_ready, down.health) == (0, 0, "down")
    assert not client.CoreV1Api(api).list_namespaced_pod(ns).items
    with pytest.raises(NotFound):
        target.scale("missing", 1)
    with pytest.raises(UsageError):
        target.scale("fraud-api", -1)


def test_rollback_applies_the_previous_spec_and_restores_its_version(target: K8sTarget, api: Any, ns: str) -> None:
    v1 = _spec("1", replicas=2)
    target.apply(v1)
    target.apply(_spec("2", replicas=2))
    status = target.rollback_to(v1)
    assert (status.version, status.digest, status.health) == ("1", "mlctl/fraud:1", "healthy")
    assert status.details["revision"] == "3"  # Kubernetes renumbers the restored ReplicaSet
    sets = client.AppsV1Api(api).list_namespaced_replica_set(ns).items
    assert len(sets) == 2  # the first ReplicaSet was reused, not a new one made
    pods = client.CoreV1Api(api).list_namespaced_pod(ns).items
    assert {p.spec.containers[0].image for p in pods} == {"mlctl/fraud:1"}


def test_stop_is_idempotent_and_logs_read_the_pods(target: K8sTarget, api: Any, ns: str) -> None:
    target.apply(_spec("1", replicas=2))
    logs = target.logs("fraud-api", tail=3)
    lines = logs.splitlines()
    pods = {p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(ns).items}
    assert len(lines) == 6 and {line.split("]")[0].removeprefix("[pod/") for line in lines} == pods
    assert "listening on 0.0.0.0:8000" in logs

    assert target.stop("fraud-api") is True
    assert target.stop("fraud-api") is False
    assert target.status("fraud-api") is None
    with pytest.raises(NotFound):
        target.logs("fraud-api")
    core = client.CoreV1Api(api)
    assert not core.list_namespaced_service(ns).items
    assert not core.list_namespaced_pod(ns).items  # garbage-collected with their Deployment


def test_hpa_is_created_and_removed_with_the_setting(kube_api: KubeAPI, api: Any, ns: str) -> None:
    autoscaled = K8sTarget(
        None, ns, kubeconfig=str(kube_api.kubeconfig), timeout_s=30, poll_interval_s=0.1,
        hpa={"min_replicas": 2, "max_replicas": 4},
    )  # fmt: skip
    status = autoscaled.apply(_spec("1", replicas=1))
    assert status.details["hpa"] == {"min_replicas": 2, "max_replicas": 4}
    hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("fraud-api", ns)
    assert hpa.spec.scale_target_ref.name == "fraud-api"
    assert autoscaled.status("fraud-api").replicas_desired == 2  # the HPA lifted it to its minimum
    with pytest.raises(UsageError, match="autoscaled"):
        autoscaled.scale("fraud-api", 3)

    plain = K8sTarget(None, ns, kubeconfig=str(kube_api.kubeconfig), timeout_s=30, poll_interval_s=0.1)
    status = plain.apply(_spec("1", replicas=1))
    assert status.details["hpa"] is None and status.replicas_desired == 1
    assert not client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(ns).items


def test_rollout_that_never_gets_ready_times_out(kube_api: KubeAPI, target: K8sTarget, api: Any, ns: str) -> None:
    target.apply(_spec("1", replicas=1))
    target.timeout_s = 2
    broken = K8sTarget(None, ns, kubeconfig=str(kube_api.kubeconfig), image="registry.local/fraud:broken",
                       timeout_s=5, poll_interval_s=0.1)  # fmt: skip
    # The status is read while the fault still holds: once it is lifted the broken pod turns ready.
    with kube_api.faults(unready_images=["*:broken"]):
        with pytest.raises(OperationFailed) as err:
            broken.apply(_spec("2", replicas=1))
        status = target.status("fraud-api")
    exc = err.value
    assert "not ready after 5s" in exc.message and "readiness probe" in exc.message
    assert exc.hint and f"-n {ns} describe deployment fraud-api" in exc.hint
    assert exit_code_for(exc) == 1
    assert status is not None and status.replicas_ready == 1  # maxUnavailable 0: the old pod still serves
    assert status.health == "degraded" and status.details["rollout"] != "complete"


def test_unpullable_image_is_named_in_the_failure(kube_api: KubeAPI, ns: str) -> None:
    broken = K8sTarget(None, ns, kubeconfig=str(kube_api.kubeconfig), image="registry.local/fraud:typo",
                       timeout_s=2, poll_interval_s=0.1)  # fmt: skip
    with kube_api.faults(unpullable_images=["*:typo"]):
        with pytest.raises(OperationFailed) as err:
            broken.apply(_spec("1"))
        assert "ImagePullBackOff" in err.value.message or "ErrImagePull" in err.value.message
        logs = broken.logs("fraud-api")
        assert "no log yet" in logs and "waiting to start" in logs


def test_api_server_down_is_service_unavailable(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}", context="dead")
    target = K8sTarget("dead", "ml", kubeconfig=str(kubeconfig), timeout_s=5)
    with pytest.raises(ServiceUnavailable) as err:
        target.apply(_spec("1"))
    assert exit_code_for(err.value) == EXIT_UNAVAILABLE
    assert "context dead" in err.value.message and err.value.hint and "--context dead" in err.value.hint
    with pytest.raises(ServiceUnavailable):
        target.status("fraud-api")


def test_bad_credentials_and_missing_rights_are_clear(kube_api: KubeAPI, tmp_path: Path, ns: str) -> None:
    wrong = write_kubeconfig(tmp_path / "kubeconfig", kube_api.url, token="not-the-token")
    with pytest.raises(ConfigError) as err:
        K8sTarget(None, ns, kubeconfig=str(wrong)).apply(_spec("1"))
    assert "401 Unauthorized" in err.value.message and "credentials" in err.value.message

    target = K8sTarget(None, ns, kubeconfig=str(kube_api.kubeconfig), timeout_s=5)
    with kube_api.faults(forbidden=["create:deployments"]), pytest.raises(OperationFailed) as err:
        target.apply(_spec("1"))
    assert err.value.message.startswith("forbidden to create Deployment fraud-api")
    assert err.value.details["status"] == 403 and "auth can-i" in (err.value.hint or "")


def test_kubeconfig_and_namespace_problems(kube_api: KubeAPI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        K8sTarget("prod", "ml", kubeconfig=str(kube_api.kubeconfig)).status("fraud-api")
    assert "no context 'prod'" in err.value.message and "kube-test" in (err.value.hint or "")
    with pytest.raises(ConfigError):
        K8sTarget(None, "ml", kubeconfig=str(tmp_path / "absent")).status("fraud-api")
    with pytest.raises(NotFound) as missing:
        K8sTarget("kube-test", "no-such-ns", kubeconfig=str(kube_api.kubeconfig)).apply(_spec("1"))
    assert "create namespace no-such-ns" in (missing.value.hint or "")


def test_objects_not_created_by_mlctl_are_left_alone(target: K8sTarget, api: Any, ns: str) -> None:
    foreign = {
        "metadata": {"name": "fraud-api", "labels": {"app": "x"}},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    client.CoreV1Api(api).create_namespaced_service(ns, foreign)
    with pytest.raises(OperationFailed, match="not created by mlctl"):
        target.apply(_spec("1"))
    assert not client.AppsV1Api(api).list_namespaced_deployment(ns).items  # refused before writing anything
    with pytest.raises(OperationFailed, match="not created by mlctl"):
        target.stop("fraud-api")
    assert client.CoreV1Api(api).read_namespaced_service("fraud-api", ns).spec.selector == {"app": "x"}


REAL = os.environ.get("MLCTL_TEST_REAL_KUBECONFIG")


@pytest.mark.skipif(not REAL, reason="set MLCTL_TEST_REAL_KUBECONFIG to a kubeconfig that reaches a real cluster")
def test_real_cluster_round_trip() -> None:
    """Against a real cluster: MLCTL_TEST_REAL_CONTEXT/NAMESPACE pick where (current context, ``default``).

    Read-only checks always; with ``MLCTL_TEST_REAL_IMAGE`` (an image serving the model at
    /srv/model) also deploy, scale, read logs and stop a throwaway deployment.
    """
    target = K8sTarget(
        os.environ.get("MLCTL_TEST_REAL_CONTEXT") or None,
        os.environ.get("MLCTL_TEST_REAL_NAMESPACE", "default"),
        kubeconfig=REAL,
        image=os.environ.get("MLCTL_TEST_REAL_IMAGE"),
        timeout_s=float(os.environ.get("MLCTL_TEST_REAL_TIMEOUT", "300")),
    )
    name = f"mlctl-test-{uuid.uuid4().hex[:6]}"
    assert target.status(name) is None
    assert target.stop(name) is False
    if not os.environ.get("MLCTL_TEST_REAL_IMAGE"):
        return
    try:
        status = target.apply(_spec("1", name=name, replicas=1, cpu="100m", memory="256Mi"))
        assert status.health == "healthy" and status.replicas_ready == 1
        assert target.scale(name, 2).replicas_ready == 2
        assert target.logs(name, tail=5)
    finally:
        target.stop(name)
