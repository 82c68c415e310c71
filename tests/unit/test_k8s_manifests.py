"""Manifests for the k8s deploy target: content, strict schema validation for 1.32, patches, plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlctl.core.errors import UsageError
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
from mlctl.lifecycle.deploy.k8s import K8sTarget, parse_target, rollout_progress
from mlctl.lifecycle.deploy.k8s_manifests import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_LAST_APPLIED,
    ANNOTATION_MODEL_SHA256,
    default_image,
    label_value,
    last_applied,
    render_manifests,
    strategic_patch,
    with_last_applied,
)
from tests.support.k8s_validate import validate_strict as _validate

SHA = "0123456789abcdef" * 4


def _spec(version: str = "3", **kwargs: object) -> DeploySpec:
    model = ModelArtifact("fraud", version, "champion", Path("/models/fraud.skops"), SHA)
    return DeploySpec("fraud-api", model, **kwargs)  # type: ignore[arg-type]


def _by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {m["kind"]: m for m in manifests}


def test_deployment_and_service_carry_labels_annotations_and_server_command() -> None:
    spec = _spec(replicas=3, port=8080, cpu="250m", memory="1Gi", env={"LOG_LEVEL": "debug"})
    kinds = _by_kind(render_manifests(spec, image="registry.local/fraud:3", namespace="ml"))
    assert sorted(kinds) == ["Deployment", "Service"]
    dep, svc = kinds["Deployment"], kinds["Service"]

    labels = dep["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "fraud",
        "app.kubernetes.io/instance": "fraud-api",
        "app.kubernetes.io/version": "3",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mlctl",
    }
    assert dep["spec"]["template"]["metadata"]["labels"] == labels
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items() and "app.kubernetes.io/version" not in selector
    assert svc["spec"]["selector"] == selector
    assert dep["metadata"]["annotations"][ANNOTATION_MODEL_SHA256] == SHA
    assert dep["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] == spec.config_hash()
    assert dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION_MODEL_SHA256] == SHA
    assert dep["metadata"]["namespace"] == svc["metadata"]["namespace"] == "ml"
    assert dep["spec"]["replicas"] == 3

    strategy = dep["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["image"] == "registry.local/fraud:3"
    assert container["command"] == [
        "python", "-m", "mlctl.serving", "--artifact", "/srv/model/artifact.json",
        "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "1Gi"},
        "limits": {"cpu": "250m", "memory": "1Gi"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "LOG_LEVEL", "value": "debug"} in container["env"]

    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["type"] == "ClusterIP"


def test_hpa_leaves_replicas_to_the_autoscaler() -> None:
    kinds = _by_kind(render_manifests(_spec(replicas=2), image="fraud:3", namespace="ml", hpa={"max_replicas": 6}))
    hpa = kinds["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-api"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert "replicas" not in kinds["Deployment"]["spec"]


@pytest.mark.parametrize(
    ("kwargs", "hpa", "fragment"),
    [
        ({"name": "Fraud_API"}, None, "invalid Kubernetes name"),
        ({"name": "9lives"}, None, "invalid Kubernetes name"),
        ({"cpu": "half"}, None, "invalid cpu quantity"),
        ({"memory": "1 GB"}, None, "invalid memory quantity"),
        ({"port": 0}, None, "port must be between"),
        ({"replicas": -1}, None, "replicas must be"),
        ({"env": {"BAD NAME": "x"}}, None, "invalid environment variable name"),
        ({}, {"min_replicas": 2}, "needs max_replicas"),
        ({}, {"max_replicas": 2, "min_replicas": 3}, "min_replicas (3) <= max_replicas (2)"),
        ({}, {"max_replicas": 2, "target": 3}, "unknown HPA setting"),
    ],
)
def test_bad_specs_are_usage_errors(kwargs: dict, hpa: dict | None, fragment: str) -> None:
    model = ModelArtifact("fraud", "3", None, Path("m"), SHA)
    spec = DeploySpec(**{"name": "fraud-api", "model": model, **kwargs})
    with pytest.raises(UsageError) as err:
        render_manifests(spec, image="fraud:3", namespace="ml", hpa=hpa)
    assert fragment in err.value.message


def test_bad_namespace_and_image_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="namespace"):
        render_manifests(_spec(), image="fraud:3", namespace="ML_Team")
    with pytest.raises(UsageError, match="image"):
        render_manifests(_spec(), image="", namespace="ml")


def test_label_values_and_default_image_are_sanitised() -> None:
    assert label_value("2024-01-01+rc/1") == "2024-01-01-rc-1"
    assert len(label_value("v" * 100)) == 63
    model = ModelArtifact("Fraud Model", "7", None, Path("m"), SHA)
    spec = DeploySpec("fraud-api", model)
    assert default_image(spec) == "mlctl/fraud-model:7"
    dep = render_manifests(spec, image=default_image(spec), namespace="ml")[0]
    assert dep["metadata"]["labels"]["app.kubernetes.io/name"] == "Fraud-Model"


def test_every_manifest_passes_strict_validation_for_1_32(tmp_path: Path) -> None:
    spec = _spec(replicas=2, env={"A": "1"})
    manifests = render_manifests(
        spec, image="fraud:3", namespace="ml", hpa={"max_replicas": 4, "memory_utilization": 75}
    )
    manifests += [with_last_applied(m) for m in render_manifests(spec, image="fraud:3", namespace="ml")]
    result = _validate(tmp_path, manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(manifests), result.stdout


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The check above has teeth: a misspelt field fails it."""
    dep = render_manifests(_spec(), image="fraud:3", namespace="ml")[0]
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    result = _validate(tmp_path, [dep])
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


# ------------------------------------------------------------------ patches


def test_strategic_patch_deletes_what_was_removed_since_last_apply() -> None:
    old = render_manifests(_spec("1", port=8000, env={"OLD": "1"}), image="fraud:1", namespace="ml")[0]
    new = render_manifests(_spec("2", port=9000), image="fraud:2", namespace="ml")[0]
    patch = strategic_patch(old, new)
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "model-server" and container["image"] == "fraud:2"
    assert {"containerPort": 8000, "$patch": "delete"} in container["ports"]
    assert {"name": "OLD", "$patch": "delete"} in container["env"]
    assert patch["metadata"]["labels"]["app.kubernetes.io/version"] == "2"


def test_strategic_patch_without_history_deletes_nothing() -> None:
    new = render_manifests(_spec("2"), image="fraud:2", namespace="ml")[0]
    patch = strategic_patch(None, new)
    assert patch == new
    assert "$patch" not in json.dumps(patch)


def test_strategic_patch_nulls_removed_map_keys() -> None:
    assert strategic_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}) == {"a": {"b": 1, "c": None}}


def test_last_applied_round_trip() -> None:
    manifest = render_manifests(_spec(), image="fraud:3", namespace="ml")[1]
    stored = with_last_applied(manifest)
    assert ANNOTATION_LAST_APPLIED not in manifest["metadata"].get("annotations", {})
    assert last_applied(stored["metadata"]["annotations"]) == manifest
    assert last_applied({ANNOTATION_LAST_APPLIED: "{not json"}) is None
    assert last_applied(None) is None


# ------------------------------------------------------------------ target without a cluster


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("k8s://prod/ml", ("prod", "ml")),
        ("k8s:///ml", (None, "ml")),
        ("k8s://kind-kind/default", ("kind-kind", "default")),
    ],
)
def test_parse_target(url: str, expected: tuple[str | None, str]) -> None:
    assert parse_target(url) == expected


@pytest.mark.parametrize("url", ["k8s://prod", "k8s://prod/", "docker://x/y", "k8s://prod/a/b", "k8s://prod/Bad_NS"])
def test_parse_target_rejects(url: str) -> None:
    with pytest.raises(UsageError):
        parse_target(url)


def test_plan_renders_without_touching_a_cluster(tmp_path: Path) -> None:
    target = K8sTarget.from_url("k8s://nowhere/ml", kubeconfig=str(tmp_path / "missing"), image="fraud:3")
    plan = target.plan(_spec(replicas=2))
    assert plan.target == "k8s://nowhere/ml"
    assert [m["kind"] for m in plan.manifests] == ["Deployment", "Service"]
    assert any("wait up to 120s" in a for a in plan.actions)
    assert any("delete HorizontalPodAutoscaler" in a for a in plan.actions)


def test_plan_does_not_import_the_kubernetes_client() -> None:
    code = (
        "import sys, pathlib\n"
        "from mlctl.lifecycle.artifact import ModelArtifact\n"
        "from mlctl.lifecycle.deploy.base import DeploySpec\n"
        "from mlctl.lifecycle.deploy.k8s import K8sTarget\n"
        "m = ModelArtifact('fraud', '1', None, pathlib.Path('m'), '0' * 64)\n"
        "K8sTarget(None, 'ml').plan(DeploySpec('fraud-api', m))\n"
        "print('kubernetes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


class _Obj:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def _deployment(generation: int, observed: int | None, desired: int, **status: int | None) -> _Obj:
    st = {"replicas": None, "updated_replicas": None, "ready_replicas": None, "available_replicas": None} | status
    return _Obj(
        metadata=_Obj(generation=generation),
        spec=_Obj(replicas=desired),
        status=_Obj(observed_generation=observed, **st),
    )


@pytest.mark.parametrize(
    ("dep", "done", "fragment"),
    [
        (
            _deployment(2, 1, 2, replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=2),
            False,
            "observe",
        ),
        (
            _deployment(2, 2, 2, replicas=2, updated_replicas=1, ready_replicas=2, available_replicas=2),
            False,
            "1 of 2 new",
        ),
        (_deployment(2, 2, 2, replicas=3, updated_replicas=2, ready_replicas=2, available_replicas=2), False, "1 old"),
        (_deployment(2, 2, 2, replicas=2, updated_replicas=2, ready_replicas=1, available_replicas=1), False, "1 of 2"),
        (
            _deployment(2, 2, 2, replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=1),
            False,
            "available",
        ),
        (
            _deployment(2, 2, 2, replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=2),
            True,
            "complete",
        ),
        (_deployment(3, 3, 0), True, "complete"),
    ],
)
def test_rollout_progress_follows_kubectl_rollout_status(dep: _Obj, done: bool, fragment: str) -> None:
    finished, what = rollout_progress(dep)
    assert finished is done
    assert fragment in what
