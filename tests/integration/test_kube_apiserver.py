"""The Kubernetes API test server, driven by the official ``kubernetes`` client.

These pin down the behaviour mlctl relies on, as the real API server shows it: Status bodies,
resourceVersion and generation, the three patch types, label selectors, the scale subresource,
and the controller turning Deployments into ready Pods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support import k8s_openapi as openapi
from tests.support.kube_apiserver import (
    KubeAPI,
    json_merge_patch,
    json_patch,
    parse_label_selector,
    strategic_merge_patch,
)


def _until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _deployment(name: str = "web", replicas: int = 2, image: str = "web:1", **labels: str) -> dict[str, Any]:
    pod_labels = {"app": name, **labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "ports": [{"containerPort": 8000, "name": "http"}],
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ]
                },
            },
        },
    }


def _status(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def _ready(apps: Any, ns: str, name: str, replicas: int) -> Any:
    def check() -> Any:
        dep = apps.read_namespaced_deployment(name, ns)
        st = dep.status
        done = (
            st.observed_generation == dep.metadata.generation
            and (st.ready_replicas or 0) == replicas
            and (st.updated_replicas or 0) == replicas
            and (st.replicas or 0) == replicas
        )
        return dep if done else None

    dep = _until(check)
    assert dep is not None, f"{ns}/{name} never got {replicas} ready replicas"
    return dep


# ------------------------------------------------------------------ pure pieces


def test_strategic_merge_patch_merges_lists_by_their_keys() -> None:
    pod_spec = openapi.definition("io.k8s.api.core.v1.PodSpec")
    original = {
        "containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "b"},
        ]
    }
    patch = {
        "containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}, {"name": "X", "$patch": "delete"}]},
            {"name": "c", "image": "c:1"},
        ]
    }
    merged = strategic_merge_patch(original, patch, pod_spec)
    assert [c["name"] for c in merged["containers"]] == ["a", "b", "c"]
    assert merged["containers"][0] == {
        "name": "a",
        "image": "a:2",
        "env": [{"name": "Y", "value": "2"}],
        "ports": [{"containerPort": 80}],
    }
    replaced = strategic_merge_patch(
        original, {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}, pod_spec
    )
    assert replaced == {"containers": [{"name": "z", "image": "z"}]}
    ordered = strategic_merge_patch(original, {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}, pod_spec)
    assert [c["name"] for c in ordered["containers"]] == ["b", "a"]
    container_ports = strategic_merge_patch(
        original, {"containers": [{"name": "a", "ports": [{"containerPort": 81}]}]}, pod_spec
    )
    assert container_ports["containers"][0]["ports"] == [{"containerPort": 80}, {"containerPort": 81}]
    service_spec = openapi.definition("io.k8s.api.core.v1.ServiceSpec")
    ports = strategic_merge_patch({"ports": [{"port": 80}]}, {"ports": [{"port": 81}]}, service_spec)
    assert ports == {"ports": [{"port": 80}, {"port": 81}]}


def test_strategic_merge_patch_replaces_lists_the_api_types_do_not_merge() -> None:
    pod_spec = openapi.definition("io.k8s.api.core.v1.PodSpec")
    original = {"tolerations": [{"key": "a"}], "containers": [{"name": "a", "args": ["x"]}]}
    patch = {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["y"]}]}
    merged = strategic_merge_patch(original, patch, pod_spec)
    assert merged == {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["y"]}]}
    meta = openapi.definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    finalizers = strategic_merge_patch({"finalizers": ["a", "b"]}, {"finalizers": ["b", "c"]}, meta)
    assert finalizers == {"finalizers": ["a", "b", "c"]}  # a list of scalars with strategy merge: a set
    assert strategic_merge_patch(original, patch) == patch  # an unknown type: every list replaced


def test_merge_and_json_patches() -> None:
    assert json_merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2]}) == {
        "a": {"c": 2},
        "l": [2],
    }
    doc = {"spec": {"replicas": 1, "list": [1, 3]}}
    out = json_patch(
        doc,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/spec/list/1", "value": 2},
            {"op": "add", "path": "/spec/list/-", "value": 9},
            {"op": "add", "path": "/spec/new~1key", "value": "x"},
            {"op": "test", "path": "/spec/replicas", "value": 4},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
            {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
            {"op": "remove", "path": "/spec/list/0"},
        ],
    )
    assert out == {"spec": {"replicas": 4, "list": [2, 3, 9], "new/key": "x", "moved": 4}}
    assert doc == {"spec": {"replicas": 1, "list": [1, 3]}}


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1,b=2", {"a": "1", "b": "3"}, False),
        ("a!=1", {"b": "1"}, True),
        ("a in (1, 2),b notin (3)", {"a": "2", "b": "4"}, True),
        ("a,!b", {"a": "x"}, True),
        ("a,!b", {"a": "x", "b": "y"}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_label_selector(selector)(labels) is matches


# ------------------------------------------------------------------ through the official client


def test_version_and_authentication(kube_api: KubeAPI, api: Any) -> None:
    assert client.VersionApi(api).get_code().minor == "32"
    configuration = client.Configuration()
    configuration.host = kube_api.url
    anonymous = client.ApiClient(configuration)
    try:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(anonymous).list_namespace()
        assert err.value.status == 401
        assert _status(err.value)["reason"] == "Unauthorized"
        assert client.VersionApi(anonymous).get_code().major == "1"  # /version needs no credentials
    finally:
        anonymous.close()


def test_create_get_list_and_status_bodies(api: Any, ns: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "cfg", "labels": {"tier": "a"}}, "data": {"k": "v"}}
    )
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    core.create_namespaced_config_map(ns, {"metadata": {"name": "other", "labels": {"tier": "b"}}})
    assert core.read_namespaced_config_map("cfg", ns).data == {"k": "v"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector="tier=a").items] == ["cfg"]
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector="tier!=a").items] == ["other"]
    page = core.list_namespaced_config_map(ns, limit=1)
    assert len(page.items) == 1 and page.metadata._continue

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})
    body = _status(err.value)
    assert (err.value.status, body["kind"], body["reason"], body["code"]) == (409, "Status", "AlreadyExists", 409)
    assert body["details"] == {"name": "cfg", "kind": "configmaps"}

    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", ns)
    body = _status(err.value)
    assert (err.value.status, body["reason"], body["message"]) == (404, "NotFound", 'configmaps "missing" not found')

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"labels": {"a": "b"}}})
    body = _status(err.value)
    assert (err.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-namespace", {"metadata": {"name": "x"}})
    assert err.value.status == 404 and _status(err.value)["details"]["kind"] == "namespaces"

    deleted = core.delete_namespaced_config_map("cfg", ns)
    assert deleted["status"] == "Success"
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("cfg", ns)
    assert err.value.status == 404


def test_resource_version_and_optimistic_concurrency(api: Any, ns: str) -> None:
    core = client.CoreV1Api(api)  # a ConfigMap: no controller writes to it behind our back
    created = core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    rv = int(created.metadata.resource_version)
    changed = core.patch_namespaced_config_map("cfg", ns, {"data": {"a": "2"}})
    assert int(changed.metadata.resource_version) > rv
    same = core.patch_namespaced_config_map("cfg", ns, {"data": {"a": "2"}})
    assert same.metadata.resource_version == changed.metadata.resource_version  # a no-op write

    stale = {"metadata": {"name": "cfg", "resourceVersion": created.metadata.resource_version}, "data": {"a": "3"}}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cfg", ns, stale)
    assert err.value.status == 409 and _status(err.value)["reason"] == "Conflict"
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cfg", ns, {"metadata": {"name": "cfg"}, "data": {"a": "3"}})
    assert err.value.status == 422  # an update must carry the resourceVersion

    fresh = {"metadata": {"name": "cfg", "resourceVersion": same.metadata.resource_version}, "data": {"a": "3"}}
    replaced = core.replace_namespaced_config_map("cfg", ns, fresh)
    assert replaced.data == {"a": "3"} and replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(same.metadata.resource_version)


def test_generation_follows_spec_changes_only(api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    dep = apps.create_namespaced_deployment(ns, _deployment())
    assert dep.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"team": "ml"}}})
    assert labelled.metadata.generation == 1  # metadata changes leave generation alone
    assert int(labelled.metadata.resource_version) > int(dep.metadata.resource_version)
    image = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "web:2"}]}}}}
    )
    assert image.metadata.generation == 2
    again = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "web:2"}]}}}}
    )
    assert again.metadata.generation == 2  # the same spec again is no change
    for _ in range(10):  # replace races the controller's status writes: retry on 409, as clients do
        current = apps.read_namespaced_deployment("web", ns)
        body = _deployment(image="web:3")
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        try:
            replaced = apps.replace_namespaced_deployment("web", ns, body)
            break
        except ApiException as exc:
            assert exc.status == 409
    assert replaced.metadata.generation == 3 and replaced.metadata.uid == dep.metadata.uid


def test_deployment_validation(api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    bad = _deployment()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(ns, bad)
    assert err.value.status == 422
    assert "selector` does not match template `labels`" in _status(err.value)["message"]

    apps.create_namespaced_deployment(ns, _deployment())
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("web", ns, {"spec": {"selector": {"matchLabels": {"app": "web", "x": "y"}}}})
    assert err.value.status == 422 and "field is immutable" in _status(err.value)["message"]


def test_three_patch_types(api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment())
    sidecar = {"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}}}
    merged = apps.patch_namespaced_deployment("web", ns, sidecar)  # strategic merge: by container name
    assert [c.name for c in merged.spec.template.spec.containers] == ["main", "proxy"]
    assert merged.spec.template.spec.containers[0].env[0].name == "A"

    replaced = apps.patch_namespaced_deployment(
        "web", ns, sidecar, _content_type="application/merge-patch+json"
    )  # merge patch: lists are replaced whole
    assert [c.name for c in replaced.spec.template.spec.containers] == ["proxy"]

    patched = apps.patch_namespaced_deployment(
        "web",
        ns,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
        ],
    )
    assert patched.spec.replicas == 3 and patched.metadata.labels["extra"] == "yes"


def test_controller_creates_ready_pods_with_owner_references(api: Any, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment(replicas=2, tier="web"))
    dep = _ready(apps, ns, "web", 2)
    assert dep.status.available_replicas == 2
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert {c.type: c.reason for c in dep.status.conditions}["Progressing"] == "NewReplicaSetAvailable"

    pods = core.list_namespaced_pod(ns, label_selector="app=web,tier=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        (owner,) = pod.metadata.owner_references
        assert owner.kind == "ReplicaSet" and owner.controller
        rs = apps.read_namespaced_replica_set(owner.name, ns)
        assert rs.metadata.owner_references[0].uid == dep.metadata.uid

    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    _ready(apps, ns, "web", 1)
    assert len(core.list_namespaced_pod(ns, label_selector="app=web").items) == 1

    apps.delete_namespaced_deployment("web", ns)
    assert _until(lambda: not core.list_namespaced_pod(ns).items), "pods outlived their deployment"
    assert not apps.list_namespaced_replica_set(ns).items


def test_rolling_update_and_rollback_reuse_replica_sets(api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment(replicas=2))
    _ready(apps, ns, "web", 2)
    change = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "web:2"}]}}}}
    apps.patch_namespaced_deployment("web", ns, change)
    dep = _ready(apps, ns, "web", 2)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    back = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "web:1"}]}}}}
    apps.patch_namespaced_deployment("web", ns, back)
    dep = _ready(apps, ns, "web", 2)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert len(apps.list_namespaced_replica_set(ns).items) == 2  # the first one was reused


def test_scale_subresource(api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment(replicas=1))
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert (scale.kind, scale.api_version, scale.spec.replicas) == ("Scale", "autoscaling/v1", 1)
    assert scale.status.selector == "app=web"

    # read-modify-write, as clients do: the controller may move the Deployment's status (and so its
    # resourceVersion) between the read and the write, and then the write is refused with 409
    for _ in range(50):
        scale = apps.read_namespaced_deployment_scale("web", ns)
        scale.spec.replicas = 3
        try:
            after = apps.replace_namespaced_deployment_scale("web", ns, scale)
            break
        except ApiException as exc:
            assert exc.status == 409, exc
    else:
        raise AssertionError("every write of the scale met a newer resourceVersion")
    assert after.spec.replicas == 3
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3

    scale.metadata.resource_version = "1"
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment_scale("web", ns, scale)
    assert err.value.status == 409

    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": -1}})
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment_scale("nope", ns)
    assert err.value.status == 404


def test_services_get_a_cluster_ip_and_answer_deletes_with_the_object(api: Any, ns: str) -> None:
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(
        ns, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "name": "a"}]}}
    )
    assert svc.spec.cluster_ip and svc.spec.type == "ClusterIP"
    assert svc.spec.ports[0].target_port == 80
    patched = core.patch_namespaced_service("web", ns, {"spec": {"ports": [{"port": 81, "name": "b"}]}})
    assert patched.spec.cluster_ip == svc.spec.cluster_ip
    assert sorted(p.port for p in patched.spec.ports) == [80, 81]  # merged by port
    deleted = core.delete_namespaced_service("web", ns)
    assert deleted.metadata.name == "web"


def test_pod_logs_and_waiting_containers(kube_api: KubeAPI, api: Any, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment(replicas=1))
    _ready(apps, ns, "web", 1)
    (pod,) = core.list_namespaced_pod(ns, label_selector="app=web").items
    text = core.read_namespaced_pod_log(pod.metadata.name, ns)
    assert pod.metadata.name in text and "web:1" in text
    assert len(core.read_namespaced_pod_log(pod.metadata.name, ns, tail_lines=1).splitlines()) == 1

    with kube_api.faults(unpullable_images=["*:missing"]):
        apps.create_namespaced_deployment(ns, _deployment(name="gone", replicas=1, image="web:missing"))

        def waiting() -> Any:
            pods = core.list_namespaced_pod(ns, label_selector="app=gone").items
            statuses = pods[0].status.container_statuses if pods else None
            reason = statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None
            return pods[0] if reason == "ImagePullBackOff" else None

        stuck = _until(waiting)
        assert stuck is not None
        with pytest.raises(ApiException) as err:
            core.read_namespaced_pod_log(stuck.metadata.name, ns)
        assert err.value.status == 400 and "waiting to start" in _status(err.value)["message"]


def test_hpa_v2_crud_and_min_max_clamp(api: Any, ns: str) -> None:
    apps, autoscaling = client.AppsV1Api(api), client.AutoscalingV2Api(api)
    apps.create_namespaced_deployment(ns, _deployment(replicas=1))
    hpa = {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }
    created = autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, hpa)
    assert created.spec.max_replicas == 4 and created.metadata.generation == 1
    assert [
        h.metadata.name
        for h in autoscaling.list_namespaced_horizontal_pod_autoscaler(ns, label_selector="app=web").items
    ] == ["web"]
    _ready(apps, ns, "web", 2)  # raised to minReplicas
    autoscaling.patch_namespaced_horizontal_pod_autoscaler("web", ns, {"spec": {"maxReplicas": 5}})
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler("web", ns).metadata.generation == 2
    autoscaling.delete_namespaced_horizontal_pod_autoscaler("web", ns)
    with pytest.raises(ApiException) as err:
        autoscaling.read_namespaced_horizontal_pod_autoscaler("web", ns)
    assert err.value.status == 404


def test_dry_run_and_forbidden(kube_api: KubeAPI, api: Any, ns: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment(), dry_run="All")
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("web", ns)
    assert err.value.status == 404
    with kube_api.faults(forbidden=["create:deployments"]):
        with pytest.raises(ApiException) as err:
            apps.create_namespaced_deployment(ns, _deployment())
        body = _status(err.value)
        assert (err.value.status, body["reason"]) == (403, "Forbidden")
        assert 'cannot create resource "deployments"' in body["message"]
    apps.create_namespaced_deployment(ns, _deployment())


def test_namespace_deletion_removes_its_objects(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "short-lived"}})
    core.create_namespaced_config_map("short-lived", {"metadata": {"name": "cfg"}})
    gone = core.delete_namespace("short-lived")
    assert gone["status"]["phase"] == "Terminating"
    assert not core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=short-lived").items
