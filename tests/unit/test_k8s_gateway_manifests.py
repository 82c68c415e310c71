"""Manifests for the model gateway on Kubernetes: content, refusals, strict schema validation for 1.32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlctl.core.errors import UsageError
from mlctl.lifecycle.deploy.k8s_manifests import render_gateway_manifests, strategic_patch
from tests.support.k8s_validate import validate_strict

REDIS = "redis://redis:6379/0"
MLFLOW = "http://mlflow:5000"


def _render(**kwargs: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"image": "registry.local/mlctl:1.4", "state_url": REDIS, "tracking_uri": MLFLOW}
    args.update(kwargs)
    name = args.pop("name", "gateway")
    models = args.pop("models", ["fraud", "churn"])
    return render_gateway_manifests(name, models, **args)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def _problem(**kwargs: Any) -> UsageError:
    with pytest.raises(UsageError) as err:
        _render(**kwargs)
    return err.value


# ------------------------------------------------------------------ content


def test_deployment_runs_the_gateway_with_its_state_and_registry() -> None:
    dep, svc = _render(namespace="ml", replicas=3, port=8080, cpu="500m", memory="1Gi")
    assert (dep["kind"], svc["kind"]) == ("Deployment", "Service")
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == "gateway"
    assert dep["metadata"]["namespace"] == svc["metadata"]["namespace"] == "ml"
    assert dep["spec"]["replicas"] == 3

    container = _container(dep)
    assert container["name"] == "gateway"
    assert container["image"] == "registry.local/mlctl:1.4"
    assert container["command"] == [
        "mlctl", "serve", "start", "--models", "fraud,churn", "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = _env(container)
    assert env["MLCTL_SERVE__STATE"] == {"name": "MLCTL_SERVE__STATE", "value": REDIS}
    assert env["MLCTL_TRACKING__URI"] == {"name": "MLCTL_TRACKING__URI", "value": MLFLOW}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }


def test_probes_allow_the_models_to_load_before_readiness() -> None:
    container = _container(_render()[0])
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready["httpGet"] == {"path": "/ready", "port": "http"}
    assert live["httpGet"] == {"path": "/health", "port": "http"}
    # The gateway listens only once its models are loaded: liveness must not kill it meanwhile.
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert ready["initialDelaySeconds"] >= 5 and ready["failureThreshold"] >= 3


def test_pod_is_hardened_like_the_model_servers_and_scraped_by_prometheus() -> None:
    dep = _render(port=9000)[0]
    pod = dep["spec"]["template"]["spec"]
    container = _container(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    # Model versions are downloaded under the working directory and HOME: both on the writable /tmp.
    assert container["workingDir"] == "/tmp"
    assert _env(container)["HOME"]["value"] == "/tmp"
    assert "resources" not in container  # none given
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_labels_selector_and_service() -> None:
    dep, svc = _render(name="ab-gateway", port=8000)
    labels = dep["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "mlctl-gateway",
        "app.kubernetes.io/instance": "ab-gateway",
        "app.kubernetes.io/component": "gateway",
        "app.kubernetes.io/managed-by": "mlctl",
    }
    assert dep["spec"]["template"]["metadata"]["labels"] == labels
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/instance": "ab-gateway", "app.kubernetes.io/component": "gateway"}
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_duplicate_models_are_served_once_in_order() -> None:
    container = _container(_render(models=["fraud", "churn", "fraud"])[0])
    assert container["command"][4] == "fraud,churn"


def test_hpa_scales_the_deployment_and_owns_its_replicas() -> None:
    dep, _, hpa = _render(replicas=2, cpu="1", hpa={"min": 2, "max": 10, "cpu": 70})
    assert "replicas" not in dep["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["labels"] == dep["metadata"]["labels"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]


def test_hpa_defaults_and_long_names() -> None:
    *_, hpa = _render(replicas=3, cpu="1", memory="2Gi", hpa={"max_replicas": 5, "memory_utilization": 60})
    assert hpa["spec"]["minReplicas"] == 3
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 80, "memory": 60}


def test_secrets_hold_urls_with_passwords() -> None:
    dep = _render(
        state_url=None,
        state_secret=("gateway-redis", "url"),
        tracking_uri=None,
        tracking_secret=("mlflow.auth", "tracking-uri"),
    )[0]
    env = _env(_container(dep))
    assert env["MLCTL_SERVE__STATE"] == {
        "name": "MLCTL_SERVE__STATE",
        "valueFrom": {"secretKeyRef": {"name": "gateway-redis", "key": "url"}},
    }
    assert env["MLCTL_TRACKING__URI"]["valueFrom"] == {"secretKeyRef": {"name": "mlflow.auth", "key": "tracking-uri"}}
    assert "value" not in env["MLCTL_SERVE__STATE"]


def test_the_gateway_patches_cleanly_when_its_models_change() -> None:
    old = _render(models=["fraud"])[0]
    new = _render(models=["fraud", "churn"])[0]
    (container,) = strategic_patch(old, new)["spec"]["template"]["spec"]["containers"]
    assert container["command"][4] == "fraud,churn"
    assert "$patch" not in str(container)


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        ("sqlite:///.mlctl/state.db", "SQLite file lives in one pod"),
        ("memory", "memory state lives in one process"),
        ("postgresql://db/state", "must be Redis"),
        ("redis://", "names no host"),
    ],
)
def test_state_that_replicas_cannot_share_is_refused(state: str, fragment: str) -> None:
    err = _problem(state_url=state)
    assert fragment in err.message
    assert "redis://" in (err.hint or "")


@pytest.mark.parametrize(
    ("kwargs", "secret_param"),
    [
        ({"state_url": "redis://default:s3cret@redis:6379/0"}, "state_secret"),
        ({"state_url": "rediss://:s3cret@redis:6380/0"}, "state_secret"),
        ({"state_url": "redis://redis:6379/0?password=s3cret"}, "state_secret"),
        ({"tracking_uri": "https://admin:s3cret@mlflow.example:5000"}, "tracking_secret"),
    ],
)
def test_a_password_in_a_url_is_refused_and_a_secret_asked_for(kwargs: dict[str, Any], secret_param: str) -> None:
    err = _problem(**kwargs)
    assert "carries a password" in err.message
    assert secret_param in (err.hint or "") and "Secret" in (err.hint or "")
    assert "s3cret" not in err.message + (err.hint or "")  # the password is never echoed


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"models": []}, "at least one model"),
        ({"models": "fraud,churn"}, "list of model names"),
        ({"models": ["fraud", "bad name"]}, "invalid model name 'bad name'"),
        ({"models": ["a,b"]}, "invalid model name 'a,b'"),
        ({"name": "Gateway_1"}, "invalid Kubernetes name 'Gateway_1'"),
        ({"name": "1gateway"}, "invalid Kubernetes name"),
        ({"namespace": "ML"}, "invalid Kubernetes namespace"),
        ({"image": ""}, "invalid image reference"),
        ({"replicas": 0}, "replicas must be a whole number >= 1"),
        ({"port": 70000}, "port must be between 1 and 65535"),
        ({"cpu": "half"}, "invalid cpu quantity"),
        ({"tracking_uri": "sqlite:///.mlctl/mlflow.db"}, "not a server the pods can reach"),
        ({"tracking_uri": "/srv/mlruns"}, "not a server the pods can reach"),
        ({"state_url": None}, "needs its state store"),
        ({"state_secret": ("redis", "url")}, "exactly one"),
        ({"state_url": None, "state_secret": ("Redis_Secret", "url")}, "invalid Secret name"),
        ({"state_url": None, "state_secret": ("redis", "a/b")}, "invalid Secret key"),
        ({"hpa": {"max": 4}}, "no cpu is given"),
        ({"cpu": "1", "hpa": {"max": 4, "memory": 70}}, "no memory is given"),
        ({"cpu": "1", "hpa": {"min": 3}}, "needs max_replicas"),
        ({"cpu": "1", "hpa": {"max": 2, "min": 3}}, "min_replicas (3) <= max_replicas (2)"),
        ({"cpu": "1", "hpa": {"max": 4, "target": 50}}, "unknown HPA setting(s): target"),
        ({"cpu": "1", "hpa": {"max": 4, "max_replicas": 5}}, "given twice"),
    ],
)
def test_bad_inputs_are_usage_errors_naming_the_problem(kwargs: dict[str, Any], fragment: str) -> None:
    assert fragment in _problem(**kwargs).message


# ------------------------------------------------------------------ strict schema validation


def test_every_variant_passes_strict_validation_for_1_32(tmp_path: Path) -> None:
    manifests = _render(namespace="ml")
    manifests += _render(name="gw-hpa", cpu="500m", memory="512Mi", hpa={"min": 2, "max": 10, "cpu": 70, "memory": 80})
    manifests += _render(
        name="gw-secret",
        models=["fraud"],
        state_url=None,
        state_secret=("gateway-redis", "url"),
        tracking_uri=None,
        tracking_secret=("mlflow", "uri"),
        cpu="1",
        hpa={"max": 3},
    )
    assert [m["kind"] for m in manifests].count("HorizontalPodAutoscaler") == 2
    result = validate_strict(tmp_path, manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(manifests), result.stdout
