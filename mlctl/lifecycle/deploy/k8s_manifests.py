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
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

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
    "render_gateway_manifests",
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


def selector_labels(name: str, component: str = COMPONENT) -> dict[str, str]:
    """The Deployment's selector: stable for the deployment's life (selectors are immutable)."""
    return {LABEL_INSTANCE: name, LABEL_COMPONENT: component}


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


def _probe(path: str, *, delay: int, period: int, failures: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _resources(cpu: str | None, memory: str | None) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS) for what is given; ``{}`` when neither is."""
    amounts = {k: str(v) for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"requests": amounts, "limits": dict(amounts)} if amounts else {}


def _container(
    name: str,
    *,
    image: str,
    command: list[str],
    port: int,
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    probes: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """A hardened container: non-root, no privilege escalation, read-only root, no capabilities, /tmp writable."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "env": env,
    }
    if resources:
        container["resources"] = resources
    return {
        **container,
        **probes,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _deployment(
    name: str,
    *,
    namespace: str,
    labels: dict[str, str],
    selector: dict[str, str],
    annotations: dict[str, str],
    template_annotations: dict[str, str],
    container: dict[str, Any],
    replicas: int | None,
) -> dict[str, Any]:
    """A Deployment of one :func:`_container` in a non-root pod (RuntimeDefault seccomp, /tmp an emptyDir,
    no service-account token), rolled out with ``maxUnavailable: 0``; ``replicas=None`` leaves them to an HPA."""
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
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 10,
        "template": {"metadata": {"labels": labels, "annotations": template_annotations}, "spec": pod_spec},
    }
    if replicas is not None:
        deployment_spec = {"replicas": replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": deployment_spec,
    }


def render_deployment(spec: DeploySpec, *, image: str, namespace: str, replicas: bool = True) -> dict[str, Any]:
    """The Deployment; ``replicas=False`` leaves ``spec.replicas`` to an autoscaler."""
    _check_spec(spec)
    env = {"PYTHONUNBUFFERED": "1", **spec.env}
    command = ["python", "-m", "mlctl.serving", "--artifact", ARTIFACT_PATH, "--host", "0.0.0.0", "--port"]
    container = _container(
        CONTAINER_NAME,
        image=image,
        command=[*command, str(spec.port)],
        port=spec.port,
        env=[{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        resources=_resources(str(spec.cpu), str(spec.memory)),
        probes={
            "readinessProbe": _probe("/ready", delay=2, period=5),
            "livenessProbe": _probe("/health", delay=10, period=10),
        },
    )
    return _deployment(
        spec.name,
        namespace=namespace,
        labels=_labels(spec),
        selector=selector_labels(spec.name),
        annotations={
            **_model_annotations(spec),
            ANNOTATION_CONFIG_HASH: spec.config_hash(),
            ANNOTATION_CHANGE_CAUSE: f"mlctl deploy {spec.model.ref}",
        },
        template_annotations=_model_annotations(spec),
        container=container,
        replicas=spec.replicas if replicas else None,
    )


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
    return _hpa(spec.name, namespace=namespace, labels=_labels(spec), hpa=hpa, default_min=max(spec.replicas, 1))


def _hpa(name: str, *, namespace: str, labels: dict[str, str], hpa: dict[str, Any], default_min: int) -> dict[str, Any]:
    unknown = set(hpa) - _HPA_KEYS
    if unknown:
        raise UsageError(f"unknown HPA setting(s): {', '.join(sorted(unknown))}", hint=f"known: {sorted(_HPA_KEYS)}")
    if "max_replicas" not in hpa:
        raise UsageError("the HPA needs max_replicas")
    low = int(hpa.get("min_replicas") or default_min)
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
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
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


# --------------------------------------------------------------------------- the model gateway

GATEWAY_CONTAINER = "gateway"
GATEWAY_COMPONENT = "gateway"
GATEWAY_APP = "mlctl-gateway"
GATEWAY_SERVICE_PORT = 80
ANNOTATION_MODELS = "mlctl.dev/models"  # "a,b": the registered models the gateway serves
ENV_STATE = "MLCTL_SERVE__STATE"
ENV_TRACKING = "MLCTL_TRACKING__URI"
#: The short HPA keys the gateway takes, and render_hpa's long ones they stand for (both are accepted).
_GATEWAY_HPA_KEYS = {
    "min": "min_replicas",
    "max": "max_replicas",
    "cpu": "cpu_utilization",
    "memory": "memory_utilization",
}
#: A model the gateway can route: a registry name (see registry.parse_ref) its /v1/models/NAME path accepts.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_SHARED_STATE = ("redis", "rediss")
_LOCAL_TRACKING = ("", "file", "sqlite")


def _redacted(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` query parameter) replaced by ``***``."""
    if not _has_password(url):
        return url
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in query)))


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    return parts.password is not None or "password" in {k.lower() for k in parse_qs(parts.query)}


def _url_env(env_name: str, what: str, url: str | None, secret: tuple[str, str] | None, param: str) -> dict[str, Any]:
    """One env entry: the URL as a plain value, or a ``secretKeyRef`` to the Secret that holds it."""
    if (url is None) == (secret is None):
        raise UsageError(
            f"give the gateway's {what} either as {param}_url or as {param}_secret, exactly one"
            if url is not None
            else f"the gateway needs its {what}: give {param}_url, or {param}_secret=(SECRET, KEY)",
            hint=f"--{param}-secret NAME:KEY names a Secret whose key holds the whole URL (for URLs with a password)",
        )
    if secret is not None:
        if not (isinstance(secret, tuple | list) and len(secret) == 2):
            raise UsageError(f"{param}_secret must be a (secret name, key) pair, not {secret!r}")
        name, key = secret
        if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            raise UsageError(
                f"invalid Secret name {name!r} in {param}_secret",
                hint="use lowercase letters, digits, '-' and '.' (e.g. gateway-redis)",
            )
        if len(key) > 253 or not _SECRET_KEY.match(key):
            raise UsageError(
                f"invalid Secret key {key!r} in {param}_secret", hint="use letters, digits, '-', '_' and '.' (e.g. url)"
            )
        return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
    assert url is not None
    if _has_password(url):
        raise UsageError(
            f"the {what} URL {_redacted(url)!r} carries a password, which would be stored in plain text "
            "in the Deployment",
            hint=f"put the whole URL in a Secret (kubectl create secret generic NAME --from-literal=url=URL) and "
            f"refer to it instead (--{param}-secret NAME:url; {param}_secret=(NAME, 'url') in the library)",
        )
    return {"name": env_name, "value": url}


def _check_state_url(url: str) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SHARED_STATE:
        why = {
            "sqlite": "an SQLite file lives in one pod, so each replica would count its own experiments",
            "memory": "memory state lives in one process, so each replica would count its own experiments",
        }.get(scheme or url.strip().lower(), "the replicas must share one experiment store")
        raise UsageError(
            f"the gateway's state store must be Redis, not {_redacted(url)!r}: {why}",
            hint="use redis://HOST:6379/0 (rediss:// for TLS), a Redis every replica shares (--state, or serve.state)",
        )
    if not parts.hostname:
        raise UsageError(f"the state store URL {url!r} names no host", hint="e.g. redis://redis:6379/0")


def _check_tracking_uri(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme in _LOCAL_TRACKING or len(scheme) == 1 or any(c.isspace() for c in url):  # len 1: a Windows drive
        raise UsageError(
            f"the gateway's registry {url!r} is not a server the pods can reach: a local file would be "
            "read by each pod from its own image, not from the registry the models are promoted in",
            hint="give tracking_uri as the MLflow server's URL, e.g. http://mlflow:5000",
        )


def _gateway_hpa(hpa: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in hpa.items():
        long = _GATEWAY_HPA_KEYS.get(key, key)
        if long in out:
            raise UsageError(f"the HPA setting {long} is given twice (as {key!r} and as its other name)")
        out[long] = value
    unknown = set(out) - _HPA_KEYS
    if unknown:
        raise UsageError(
            f"unknown HPA setting(s): {', '.join(sorted(unknown))}",
            hint=f"known: {sorted(_GATEWAY_HPA_KEYS)} (or {sorted(_HPA_KEYS)})",
        )
    return out


def render_gateway_manifests(
    name: str,
    models: list[str],
    *,
    image: str,
    namespace: str = "default",
    replicas: int = 2,
    port: int = 8000,
    state_url: str | None = None,
    tracking_uri: str | None = None,
    state_secret: tuple[str, str] | None = None,
    tracking_secret: tuple[str, str] | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    hpa: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The model gateway (``mlctl serve start``) on Kubernetes: a Deployment, a Service and, with
    ``hpa``, an ``autoscaling/v2`` HorizontalPodAutoscaler, in that (apply) order.

    * The container ``gateway`` runs ``mlctl serve start --models A,B --host 0.0.0.0 --port PORT``
      (the image must have mlctl on its PATH), with ``MLCTL_SERVE__STATE`` and ``MLCTL_TRACKING__URI``
      set from ``state_url`` and ``tracking_uri``, or, for URLs that carry a password, from the Secrets
      ``state_secret`` / ``tracking_secret`` (``(secret name, key)``: the key holds the whole URL). A URL
      with a password is refused: it would sit in plain text in the Deployment.
    * The state must be Redis (``redis://`` or ``rediss://``): the replicas share their experiments'
      counters; SQLite or memory would give each pod its own. The registry must be a server.
    * The gateway loads its models before it listens, so a startup probe on ``/health`` allows up to
      ten minutes for that; then readiness is ``GET /ready`` and liveness ``GET /health``. The pod
      template carries ``prometheus.io/{scrape,port,path}`` annotations for ``/metrics``. The pod is
      the model server's (non-root, read-only root filesystem); the working directory and ``HOME``
      are the ``/tmp`` emptyDir, where downloaded model versions go.
    * The Service (ClusterIP) maps port 80 to the container's ``http`` port.
    * ``hpa``: ``max`` (required), ``min`` (default ``replicas``), ``cpu`` (target average CPU %,
      default 80), ``memory`` (%); ``render_hpa``'s long names are accepted too. The targets are
      percentages of the requests, so ``cpu`` (and ``memory``, for a memory target) must be given.
      With an HPA the Deployment leaves ``replicas`` to it.

    >>> kinds = render_gateway_manifests("gw", ["fraud", "churn"], image="mlctl:1", state_url="redis://redis:6379/0",
    ...                                  tracking_uri="http://mlflow:5000", cpu="1", hpa={"max": 6})
    >>> [m["kind"] for m in kinds]
    ['Deployment', 'Service', 'HorizontalPodAutoscaler']
    >>> kinds[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    ['mlctl', 'serve', 'start', '--models', 'fraud,churn', '--host', '0.0.0.0', '--port', '8000']
    """
    validate_name(name)
    validate_namespace(namespace)
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"invalid image reference {image!r}")
    if isinstance(models, str):
        raise UsageError("models must be a list of model names, not one string", hint="e.g. ['fraud', 'churn']")
    if not models:
        raise UsageError("the gateway needs at least one model to serve", hint="e.g. models=['fraud', 'churn']")
    for model in models:
        if not isinstance(model, str) or not _MODEL_NAME.match(model):
            raise UsageError(
                f"invalid model name {model!r}",
                hint="a registered model's name: up to 64 letters, digits, '.', '_', '-'",
            )
    names = list(dict.fromkeys(models))
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise UsageError(f"replicas must be a whole number >= 1, not {replicas!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"port must be between 1 and 65535, not {port!r}")
    for what, value in (("cpu", cpu), ("memory", memory)):
        if value is not None and not _QUANTITY.match(str(value)):
            raise UsageError(
                f"invalid {what} quantity {value!r}", hint="use Kubernetes quantities such as 500m, 2, 512Mi, 1Gi"
            )
    if state_url is not None:
        _check_state_url(state_url)
    if tracking_uri is not None:
        _check_tracking_uri(tracking_uri)
    env = [
        {"name": "HOME", "value": "/tmp"},
        _url_env(ENV_STATE, "state store", state_url, state_secret, "state"),
        _url_env(ENV_TRACKING, "registry (tracking URI)", tracking_uri, tracking_secret, "tracking"),
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    settings = _gateway_hpa(hpa) if hpa is not None else None
    if settings is not None:
        for resource, request in (("cpu", cpu), ("memory", memory)):
            default = 80 if resource == "cpu" else None
            if settings.get(f"{resource}_utilization", default) is not None and request is None:
                raise UsageError(
                    f"the HPA's {resource} target is a percentage of the container's {resource} request, "
                    f"and no {resource} is given",
                    hint=f"give {resource} (e.g. {'500m' if resource == 'cpu' else '1Gi'})",
                )

    labels = dict(
        sorted(
            {
                LABEL_NAME: GATEWAY_APP,
                **selector_labels(name, GATEWAY_COMPONENT),
                LABEL_MANAGED_BY: MANAGED_BY,
            }.items()
        )
    )
    listed = ",".join(names)
    container = _container(
        GATEWAY_CONTAINER,
        image=image,
        command=["mlctl", "serve", "start", "--models", listed, "--host", "0.0.0.0", "--port", str(port)],
        port=port,
        env=env,
        resources=_resources(cpu, memory),
        probes={
            "startupProbe": _probe("/health", delay=5, period=5, failures=120),
            "readinessProbe": _probe("/ready", delay=10, period=5, failures=6),
            "livenessProbe": _probe("/health", delay=10, period=10, failures=3),
        },
    )
    container["workingDir"] = "/tmp"
    deployment = _deployment(
        name,
        namespace=namespace,
        labels=labels,
        selector=selector_labels(name, GATEWAY_COMPONENT),
        annotations={ANNOTATION_MODELS: listed, ANNOTATION_CHANGE_CAUSE: f"mlctl serve start --models {listed}"},
        template_annotations={
            ANNOTATION_MODELS: listed,
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        },
        container=container,
        replicas=replicas if settings is None else None,
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_MODELS: listed},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name, GATEWAY_COMPONENT),
            "ports": [{"name": PORT_NAME, "port": GATEWAY_SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
    manifests = [deployment, service]
    if settings is not None:
        manifests.append(_hpa(name, namespace=namespace, labels=labels, hpa=settings, default_min=replicas))
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
