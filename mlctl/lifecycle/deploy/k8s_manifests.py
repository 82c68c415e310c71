"""Kubernetes manifests for one model server, and the strategic-merge patch that updates them.

Pure functions over plain dicts; nothing here imports the ``kubernetes`` client.

:func:`render_manifests` turns a :class:`~mlctl.lifecycle.deploy.base.DeploySpec` into a
Deployment and a Service (and, when asked, an ``autoscaling/v2`` HorizontalPodAutoscaler):

* labels ``app.kubernetes.io/{name,instance,version,component,managed-by}``; the selector uses only
  ``instance`` and ``component``, which never change for a deployment (selectors are immutable);
* the model's reference, alias and SHA-256 and the spec's ``config_hash()`` as ``mlctl.dev/*``
  annotations, plus ``kubernetes.io/change-cause`` for ``kubectl rollout history``;
* requests and limits from ``spec.cpu``/``spec.memory``; readiness ``GET /ready`` and liveness
  ``GET /health`` on the container port; RollingUpdate with ``maxUnavailable: 0, maxSurge: 1``;
* a non-root, read-only-root-filesystem pod (``/tmp`` is an ``emptyDir``), all capabilities dropped;
* the container runs ``python -m mlctl.serving --artifact /srv/model/artifact.json --host 0.0.0.0
  --port PORT``: the image has the model baked in at ``/srv/model``.

>>> from pathlib import Path
>>> from mlctl.lifecycle.artifact import ModelArtifact
>>> from mlctl.lifecycle.deploy.base import DeploySpec
>>> model = ModelArtifact("fraud", "3", "champion", Path("model.skops"), "ab" * 32)
>>> [m["kind"] for m in render_manifests(DeploySpec("fraud-api", model), image="fraud:3", namespace="ml")]
['Deployment', 'Service']
"""

from __future__ import annotations

import json
import re
from typing import Any

from mlctl.core.errors import UsageError
from mlctl.lifecycle.deploy.base import DeploySpec

CONTAINER_NAME = "model-server"
PORT_NAME = "http"
MODEL_DIR = "/srv/model"
ARTIFACT_PATH = f"{MODEL_DIR}/artifact.json"
RUN_AS = 10001  # the non-root user and group the model server runs as

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "model-server"
MANAGED_BY = "mlctl"

ANNOTATION_MODEL = "mlctl.dev/model"  # "name:version"
ANNOTATION_MODEL_NAME = "mlctl.dev/model-name"
ANNOTATION_MODEL_VERSION = "mlctl.dev/model-version"
ANNOTATION_MODEL_ALIAS = "mlctl.dev/model-alias"
ANNOTATION_MODEL_SHA256 = "mlctl.dev/model-sha256"
ANNOTATION_CONFIG_HASH = "mlctl.dev/config-hash"
#: What mlctl last applied (compact JSON), so the next apply can delete what was removed since.
ANNOTATION_LAST_APPLIED = "mlctl.dev/last-applied"
ANNOTATION_CHANGE_CAUSE = "kubernetes.io/change-cause"

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_HPA_KEYS = {"min_replicas", "max_replicas", "cpu_utilization", "memory_utilization"}

__all__ = [
    "ANNOTATION_LAST_APPLIED",
    "CONTAINER_NAME",
    "MERGE_KEYS",
    "default_image",
    "label_value",
    "render_deployment",
    "render_hpa",
    "render_manifests",
    "render_service",
    "selector_labels",
    "strategic_patch",
    "validate_namespace",
]


# --------------------------------------------------------------------------- names and labels


def validate_name(name: str) -> str:
    """A deployment name must be a DNS-1035 label (it names the Service too): ``fraud-api``.

    >>> validate_name("Fraud_API")
    Traceback (most recent call last):
    ...
    mlctl.core.errors.UsageError: invalid Kubernetes name 'Fraud_API'
    """
    if len(name) > 63 or not _DNS1035_LABEL.match(name):
        raise UsageError(
            f"invalid Kubernetes name {name!r}",
            hint="use at most 63 lowercase letters, digits and '-', starting with a letter (e.g. fraud-api)",
        )
    return name


def validate_namespace(namespace: str) -> str:
    """A namespace must be a DNS-1123 label."""
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        raise UsageError(
            f"invalid Kubernetes namespace {namespace!r}",
            hint="use at most 63 lowercase letters, digits and '-' (e.g. k8s://my-cluster/ml-serving)",
        )
    return namespace


def label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends.

    >>> label_value("v1.2+build/7")
    'v1.2-build-7'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return cleaned.strip("-._")


def selector_labels(name: str) -> dict[str, str]:
    """The Deployment's selector: stable for the deployment's life (selectors are immutable)."""
    return {LABEL_INSTANCE: name, LABEL_COMPONENT: COMPONENT}


def _labels(spec: DeploySpec) -> dict[str, str]:
    labels = {
        LABEL_NAME: label_value(spec.model.name) or spec.name,
        **selector_labels(spec.name),
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    version = label_value(spec.model.version)
    if version:
        labels[LABEL_VERSION] = version
    return dict(sorted(labels.items()))


def _model_annotations(spec: DeploySpec) -> dict[str, str]:
    out = {
        ANNOTATION_MODEL: spec.model.ref,
        ANNOTATION_MODEL_NAME: spec.model.name,
        ANNOTATION_MODEL_VERSION: spec.model.version,
        ANNOTATION_MODEL_SHA256: spec.model.sha256,
    }
    if spec.model.alias:
        out[ANNOTATION_MODEL_ALIAS] = spec.model.alias
    return out


def default_image(spec: DeploySpec) -> str:
    """The image name used when none is given: ``mlctl/<model>:<version>``.

    >>> from pathlib import Path
    >>> from mlctl.lifecycle.artifact import ModelArtifact
    >>> from mlctl.lifecycle.deploy.base import DeploySpec
    >>> default_image(DeploySpec("api", ModelArtifact("Fraud Model", "3", None, Path("m"), "0" * 64)))
    'mlctl/fraud-model:3'
    """
    repo = re.sub(r"[^a-z0-9._-]+", "-", spec.model.name.lower()).strip("-._") or spec.name
    tag = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.model.version)[:128].strip("-.") or "latest"
    return f"mlctl/{repo}:{tag}"


def _check_spec(spec: DeploySpec) -> None:
    validate_name(spec.name)
    if not isinstance(spec.replicas, int) or spec.replicas < 0:
        raise UsageError(f"replicas must be a whole number >= 0, not {spec.replicas!r}")
    if not isinstance(spec.port, int) or not 0 < spec.port < 65536:
        raise UsageError(f"port must be between 1 and 65535, not {spec.port!r}")
    for what, value in (("cpu", spec.cpu), ("memory", spec.memory)):
        if not _QUANTITY.match(str(value)):
            raise UsageError(
                f"invalid {what} quantity {value!r}", hint="use Kubernetes quantities such as 500m, 2, 512Mi, 1Gi"
            )
    for key in spec.env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"invalid environment variable name {key!r}")


# --------------------------------------------------------------------------- manifests


def render_deployment(spec: DeploySpec, *, image: str, namespace: str, replicas: bool = True) -> dict[str, Any]:
    """The Deployment; ``replicas=False`` leaves ``spec.replicas`` to an autoscaler."""
    _check_spec(spec)
    labels = _labels(spec)
    env = {"PYTHONUNBUFFERED": "1", **spec.env}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "python",
            "-m",
            "mlctl.serving",
            "--artifact",
            ARTIFACT_PATH,
            "--host",
            "0.0.0.0",
            "--port",
            str(spec.port),
        ],
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        "resources": {
            "requests": {"cpu": str(spec.cpu), "memory": str(spec.memory)},
            "limits": {"cpu": str(spec.cpu), "memory": str(spec.memory)},
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": PORT_NAME},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": PORT_NAME},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(spec.name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 10,
        "template": {
            "metadata": {"labels": labels, "annotations": _model_annotations(spec)},
            "spec": pod_spec,
        },
    }
    if replicas:
        deployment_spec = {"replicas": spec.replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                **_model_annotations(spec),
                ANNOTATION_CONFIG_HASH: spec.config_hash(),
                ANNOTATION_CHANGE_CAUSE: f"mlctl deploy {spec.model.ref}",
            },
        },
        "spec": deployment_spec,
    }


def render_service(spec: DeploySpec, *, namespace: str) -> dict[str, Any]:
    """A ClusterIP Service on ``spec.port`` in front of the model server's pods."""
    validate_name(spec.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": _labels(spec),
            "annotations": {ANNOTATION_MODEL: spec.model.ref},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec.name),
            "ports": [{"name": PORT_NAME, "port": spec.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def render_hpa(spec: DeploySpec, *, namespace: str, hpa: dict[str, Any]) -> dict[str, Any]:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler for the Deployment.

    ``hpa`` keys: ``max_replicas`` (required), ``min_replicas`` (default ``spec.replicas``, at
    least 1), ``cpu_utilization`` (target average CPU %, default 80) and ``memory_utilization``.
    """
    unknown = set(hpa) - _HPA_KEYS
    if unknown:
        raise UsageError(f"unknown HPA setting(s): {', '.join(sorted(unknown))}", hint=f"known: {sorted(_HPA_KEYS)}")
    if "max_replicas" not in hpa:
        raise UsageError("the HPA needs max_replicas")
    low = int(hpa.get("min_replicas") or max(spec.replicas, 1))
    high = int(hpa["max_replicas"])
    if not 1 <= low <= high:
        raise UsageError(f"HPA replicas must satisfy 1 <= min_replicas ({low}) <= max_replicas ({high})")
    metrics = []
    for resource in ("cpu", "memory"):
        target = hpa.get(f"{resource}_utilization", 80 if resource == "cpu" else None)
        if target is None:
            continue
        if not 0 < int(target) <= 1000:
            raise UsageError(f"{resource}_utilization must be a percentage above 0, not {target!r}")
        metrics.append(
            {
                "type": "Resource",
                "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": int(target)}},
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": _labels(spec)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": metrics,
        },
    }


def render_manifests(
    spec: DeploySpec, *, image: str, namespace: str, hpa: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The Deployment, the Service and (with ``hpa``) the HorizontalPodAutoscaler, in apply order.

    With an HPA the Deployment leaves ``spec.replicas`` out, so applying again never fights the
    autoscaler; the HPA's ``minReplicas`` defaults to ``spec.replicas``.
    """
    validate_namespace(namespace)
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"invalid image reference {image!r}")
    manifests = [
        render_deployment(spec, image=image, namespace=namespace, replicas=hpa is None),
        render_service(spec, namespace=namespace),
    ]
    if hpa is not None:
        manifests.append(render_hpa(spec, namespace=namespace, hpa=hpa))
    return manifests


# --------------------------------------------------------------------------- patches

_POD = "spec.template.spec"
#: How mlctl's patches merge the lists of the objects it applies. By kind, each list's path from
#: the object's root (``[]`` steps into a list's elements) -> its merge key and patch strategy, as
#: the Kubernetes API types declare them (``patchMergeKey``, ``patchStrategy``). A list not named
#: here is sent whole and replaces what the server holds. tests/unit/test_k8s_merge_keys.py checks
#: every entry against the Kubernetes OpenAPI document, and that every keyed list of these kinds
#: is either here or one mlctl never sends.
MERGE_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "Deployment": {
        f"{_POD}.containers": ("name", "merge"),
        f"{_POD}.containers[].env": ("name", "merge"),
        f"{_POD}.containers[].ports": ("containerPort", "merge"),
        f"{_POD}.containers[].volumeMounts": ("mountPath", "merge"),
        f"{_POD}.initContainers": ("name", "merge"),
        f"{_POD}.initContainers[].env": ("name", "merge"),
        f"{_POD}.initContainers[].ports": ("containerPort", "merge"),
        f"{_POD}.initContainers[].volumeMounts": ("mountPath", "merge"),
        f"{_POD}.volumes": ("name", "merge,retainKeys"),
        f"{_POD}.imagePullSecrets": ("name", "merge"),
    },
    "Service": {"spec.ports": ("port", "merge")},
    "HorizontalPodAutoscaler": {},
}


def with_last_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` carrying itself (compact JSON) in the ``mlctl.dev/last-applied`` annotation."""
    out = json.loads(json.dumps(manifest))
    annotations = out["metadata"].setdefault("annotations", {})
    annotations.pop(ANNOTATION_LAST_APPLIED, None)
    annotations[ANNOTATION_LAST_APPLIED] = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return out


def last_applied(obj_annotations: dict[str, str] | None) -> dict[str, Any] | None:
    """What mlctl last applied to an object, from its annotation (None when absent or unreadable)."""
    text = (obj_annotations or {}).get(ANNOTATION_LAST_APPLIED)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def strategic_patch(last: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """A strategic merge patch taking an object from what was ``last`` applied to ``desired``.

    Everything in ``desired`` is set; the lists :data:`MERGE_KEYS` names for its ``kind``
    (containers, env, ports, volumes...) merge by their key, so entries someone else added (a
    sidecar injected by a mesh) stay, while entries that were in ``last`` and are gone from
    ``desired`` are deleted (``$patch: delete``), and map keys that were in ``last`` and are gone
    become ``null``. Other lists are sent whole. With ``last=None`` nothing is deleted.

    >>> last = {"kind": "Service", "spec": {"ports": [{"port": 80}], "type": "NodePort"}}
    >>> strategic_patch(last, {"kind": "Service", "spec": {"ports": [{"port": 81}]}})
    {'kind': 'Service', 'spec': {'ports': [{'port': 81}, {'port': 80, '$patch': 'delete'}], 'type': None}}
    """
    return _patch(last, desired, MERGE_KEYS.get(str(desired.get("kind")), {}), "")


def _patch(
    last: dict[str, Any] | None, desired: dict[str, Any], keys: dict[str, tuple[str, str]], path: str
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    last = last or {}
    for key, value in desired.items():
        previous = last.get(key)
        where = f"{path}.{key}" if path else key
        merge_key = keys[where][0] if isinstance(value, list) and where in keys else None
        if isinstance(value, dict):
            patch[key] = _patch(previous if isinstance(previous, dict) else None, value, keys, where)
        elif merge_key is not None and all(isinstance(e, dict) and merge_key in e for e in value):
            before = {e[merge_key]: e for e in (previous if isinstance(previous, list) else []) if isinstance(e, dict)}
            wanted = {e[merge_key] for e in value}
            items = [_patch(before.get(e[merge_key]), e, keys, f"{where}[]") for e in value]
            items += [{merge_key: k, "$patch": "delete"} for k in before if k not in wanted]
            patch[key] = items
        else:
            patch[key] = value
    for key in last:
        if key not in desired:
            patch[key] = None
    return patch
