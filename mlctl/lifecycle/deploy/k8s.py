"""The ``k8s`` deploy target: a Deployment + Service (+ HPA) applied with the official client.

Target URLs are ``k8s://CONTEXT/NAMESPACE``, CONTEXT naming a context of the kubeconfig
(``$KUBECONFIG`` or ``~/.kube/config`` unless one is given); ``k8s:///NAMESPACE`` uses the
kubeconfig's current context.

:meth:`K8sTarget.apply` creates each object, or patches it when it exists (409): a strategic
merge patch computed against what mlctl applied last (kept in the ``mlctl.dev/last-applied``
annotation), so containers, env and ports merge by name while what mlctl removed since is
deleted. It then waits for the rollout as ``kubectl rollout status`` does: the controller has
observed the new generation, every replica is updated, ready and available, and no old replica
is left. The rolling update keeps ``maxUnavailable: 0``, so the previous pods serve until the new
ones are ready; a rollout that does not finish in ``timeout_s`` raises
:class:`~mlctl.core.errors.OperationFailed` naming what the pods are stuck on.

Rollback on Kubernetes is :meth:`K8sTarget.rollback_to`: the previous release's spec applied
again, which patches the Deployment back (its old ReplicaSet is reused) and waits for it.

The ``kubernetes`` package is imported only inside the methods that talk to a cluster (install
``mlctl[k8s]``); :meth:`K8sTarget.plan` needs none of it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mlctl.core.errors import (
    ConfigError,
    MlctlError,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
    UsageError,
    require,
)
from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget, validate_replicas
from mlctl.lifecycle.deploy.k8s_manifests import (
    ANNOTATION_MODEL_ALIAS,
    ANNOTATION_MODEL_NAME,
    ANNOTATION_MODEL_VERSION,
    CONTAINER_NAME,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_VERSION,
    MANAGED_BY,
    default_image,
    last_applied,
    render_manifests,
    strategic_patch,
    validate_name,
    validate_namespace,
    with_last_applied,
)

__all__ = ["K8sTarget", "parse_target", "render_manifests"]

_T = TypeVar("_T")
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
#: (connect, read) seconds for each API call
REQUEST_TIMEOUT = (5.0, 30.0)


def parse_target(url: str) -> tuple[str | None, str]:
    """``k8s://CONTEXT/NAMESPACE`` -> ``(CONTEXT or None, NAMESPACE)``.

    >>> parse_target("k8s://prod-eu/ml")
    ('prod-eu', 'ml')
    >>> parse_target("k8s:///ml")
    (None, 'ml')
    """
    parts = urlsplit(url)
    namespace = parts.path.strip("/")
    if parts.scheme != "k8s" or not namespace or "/" in namespace or parts.query or parts.fragment:
        raise UsageError(
            f"invalid Kubernetes target {url!r}",
            hint="use k8s://CONTEXT/NAMESPACE, or k8s:///NAMESPACE for the kubeconfig's current context",
        )
    return (parts.netloc or None), validate_namespace(namespace)


class K8sTarget(DeployTarget):
    """Model servers as a Deployment and a Service in one namespace of one cluster.

    ``context`` is a kubeconfig context (None: the current one); ``kubeconfig`` a kubeconfig
    path (None: ``$KUBECONFIG``, then ``~/.kube/config``); ``image`` the image with the model at
    ``/srv/model`` (None: :func:`~mlctl.lifecycle.deploy.k8s_manifests.default_image`);
    ``timeout_s`` bounds each rollout wait; ``hpa`` (``{"max_replicas": 5, "min_replicas": 2,
    "cpu_utilization": 70}``) adds a HorizontalPodAutoscaler.
    """

    kind = "k8s"

    def __init__(
        self,
        context: str | None,
        namespace: str,
        *,
        kubeconfig: str | None = None,
        image: str | None = None,
        timeout_s: float = 120,
        hpa: dict[str, Any] | None = None,
        poll_interval_s: float = 0.5,
    ):
        self.context = context or None
        self.namespace = validate_namespace(namespace)
        self.kubeconfig = kubeconfig
        self.image = image
        self.timeout_s = float(timeout_s)
        self.hpa = dict(hpa) if hpa is not None else None
        self.poll_interval_s = poll_interval_s
        self._api_client: Any = None
        self._context_name: str | None = None
        self._server: str | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> K8sTarget:
        """A target for ``k8s://CONTEXT/NAMESPACE``; keyword arguments as for the constructor."""
        context, namespace = parse_target(url)
        return cls(context, namespace, **kwargs)

    @property
    def target(self) -> str:
        """``k8s://CONTEXT/NAMESPACE`` as given (an empty context means the current one)."""
        return f"k8s://{self.context or ''}/{self.namespace}"

    def __repr__(self) -> str:
        return f"K8sTarget({self.target!r})"

    # ------------------------------------------------------------------ plan
    def image_for(self, spec: DeploySpec) -> str:
        """The image deployed for ``spec``: the target's ``image``, else ``mlctl/<model>:<version>``."""
        return self.image or default_image(spec)

    def plan(self, spec: DeploySpec) -> DeployPlan:
        """The manifests and the steps :meth:`apply` takes; talks to no cluster."""
        manifests = render_manifests(spec, image=self.image_for(spec), namespace=self.namespace, hpa=self.hpa)
        where = f"namespace {self.namespace} of context {self.context or '(current)'}"
        actions = []
        if self.hpa is None:
            actions.append(f"delete HorizontalPodAutoscaler {spec.name} if mlctl created one")
        actions += [
            f"create or patch {m['kind']} {m['metadata']['name']} in {where} (strategic merge)" for m in manifests
        ]
        replicas = f"{spec.replicas} replica(s)" if self.hpa is None else "replicas from the HPA"
        actions.append(
            f"wait up to {self.timeout_s:g}s for the rollout of {spec.model.ref} ({self.image_for(spec)}, "
            f"{replicas}) to be ready"
        )
        return DeployPlan(target=self.target, actions=actions, manifests=manifests)

    # ------------------------------------------------------------------ client and errors
    def _kubeconfig_path(self) -> str:
        return os.path.expanduser(self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config")

    def _client(self) -> Any:
        """The ``ApiClient`` for our context (created on first use)."""
        if self._api_client is not None:
            return self._api_client
        require("kubernetes", "k8s", feature="the k8s deploy target")
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        path = self._kubeconfig_path()
        try:
            contexts, current = config.list_kube_config_contexts(config_file=path)
        except (ConfigException, OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the kubeconfig {path}: {exc}",
                hint="point KUBECONFIG (or the target's kubeconfig setting) at a valid kubeconfig",
            ) from None
        names = [c.get("name") for c in contexts or []]
        wanted = self.context or (current or {}).get("name")
        if not wanted:
            raise ConfigError(f"the kubeconfig {path} has no current context", hint="use k8s://CONTEXT/NAMESPACE")
        if wanted not in names:
            raise ConfigError(
                f"no context {wanted!r} in the kubeconfig {path}",
                hint=f"known contexts: {', '.join(n for n in names if n) or '(none)'}",
            )
        configuration = client.Configuration()
        try:
            config.load_kube_config(
                config_file=path, context=wanted, client_configuration=configuration, persist_config=False
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"cannot load context {wanted!r} from {path}: {exc}") from None
        configuration.retries = 1  # fail fast when the API is down; the rollout loop polls anyway
        self._context_name = wanted
        self._server = configuration.host
        self._api_client = client.ApiClient(configuration)
        return self._api_client

    def close(self) -> None:
        """Release the HTTP connections (the target stays usable: a new client is made on demand)."""
        if self._api_client is not None:
            with contextlib.suppress(Exception):
                self._api_client.close()
            self._api_client = None

    def _where(self) -> str:
        return f"context {self._context_name or self.context or '(current)'}"

    def _kubectl(self) -> str:
        ctx = self._context_name or self.context
        return f"kubectl{f' --context {ctx}' if ctx else ''} -n {self.namespace}"

    def _call(
        self, what: str, fn: Callable[..., _T], *args: Any, passthrough: tuple[int, ...] = (404,), **kwargs: Any
    ) -> _T:
        """Call the API; map transport and HTTP failures to mlctl's errors.

        ``ApiException``s with a status in ``passthrough`` (404 unless told) reach the caller as they are.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status in passthrough:
                raise
            raise self._api_error(what, exc) from None
        except (Urllib3Error, OSError) as exc:
            raise ServiceUnavailable(
                f"the Kubernetes API of {self._where()} ({self._server}) is unreachable while trying to {what}: "
                f"{_short(exc)}",
                hint=f"check that the cluster is up and that `kubectl --context {self._context_name} get --raw "
                "/version` answers (VPN, tunnel, kubeconfig server address)",
            ) from None

    def _api_error(self, what: str, exc: Any) -> MlctlError:
        status, message, body = exc.status, _status_message(exc), _status_body(exc)
        details = {"status": status, "reason": body.get("reason") or exc.reason}
        if body.get("details", {}).get("causes"):
            details["causes"] = body["details"]["causes"]
        if status == 401:
            return ConfigError(
                f"the Kubernetes API of {self._where()} rejected its credentials (401 Unauthorized) while trying "
                f"to {what}",
                hint=f"refresh the credentials of {self._where()} in {self._kubeconfig_path()} "
                f"(`kubectl --context {self._context_name} auth whoami` shows who you are)",
                details=details,
            )
        if status == 403:
            return OperationFailed(
                f"forbidden to {what} in namespace {self.namespace} ({self._where()}): {message}",
                hint=f"ask for RBAC rights; `{self._kubectl()} auth can-i --list` shows yours",
                details=details,
            )
        if status == 422:
            return OperationFailed(
                f"the cluster rejected the manifest while trying to {what}: {message}", details=details
            )
        if status in (502, 503, 504):
            return ServiceUnavailable(
                f"the Kubernetes API of {self._where()} is unavailable ({status}) while trying to {what}: {message}",
                hint="try again in a moment; the control plane may be restarting",
                details=details,
            )
        return OperationFailed(f"could not {what} ({status} {exc.reason}): {message}", details=details)

    def _apis(self) -> tuple[Any, Any, Any]:
        from kubernetes import client

        api = self._client()
        return client.AppsV1Api(api), client.CoreV1Api(api), client.AutoscalingV2Api(api)

    def _read(self, what: str, fn: Callable[..., _T], *args: Any) -> _T | None:
        """A read that answers None on 404."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call(what, fn, *args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise  # pragma: no cover - _call maps everything else

    # ------------------------------------------------------------------ apply
    def apply(self, spec: DeploySpec) -> DeploymentStatus:
        """Create or patch the Deployment, Service (and HPA), then wait for the rollout."""
        manifests = render_manifests(spec, image=self.image_for(spec), namespace=self.namespace, hpa=self.hpa)
        apps, core, autoscaling = self._apis()
        writers = {
            "Deployment": (
                apps.read_namespaced_deployment,
                apps.create_namespaced_deployment,
                apps.patch_namespaced_deployment,
            ),
            "Service": (core.read_namespaced_service, core.create_namespaced_service, core.patch_namespaced_service),
            "HorizontalPodAutoscaler": (
                autoscaling.read_namespaced_horizontal_pod_autoscaler,
                autoscaling.create_namespaced_horizontal_pod_autoscaler,
                autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            ),
        }
        deadline = time.monotonic() + self.timeout_s
        for manifest in manifests:  # refuse before writing anything, not halfway through
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            current = self._read(f"read {kind} {name}", writers[kind][0], name, self.namespace)
            if current is not None:
                self._ensure_ours(kind, name, current)
        if self.hpa is None:  # first, or the old HPA would resize the Deployment we are about to patch
            self._delete_managed(
                spec.name,
                (
                    "HorizontalPodAutoscaler",
                    autoscaling.read_namespaced_horizontal_pod_autoscaler,
                    autoscaling.delete_namespaced_horizontal_pod_autoscaler,
                ),
            )
        for manifest in manifests:
            self._create_or_patch(manifest, *writers[manifest["kind"]])
        deployment = self._wait_rollout(spec.name, deadline)
        return self._status_of(deployment)

    def rollback_to(self, spec: DeploySpec) -> DeploymentStatus:
        """Return to a previous release: apply its spec again (patch back, then wait for the rollout).

        ``mlctl rollback`` passes the spec recorded with the release it returns to. Kubernetes finds
        the old pod template's ReplicaSet and scales it back up; ``maxUnavailable: 0`` keeps the
        current pods serving until the restored ones are ready.
        """
        return self.apply(spec)

    def _create_or_patch(self, manifest: dict[str, Any], read: Any, create: Any, patch: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        kind, name = manifest["kind"], manifest["metadata"]["name"]
        body = with_last_applied(manifest)
        try:
            return self._call(f"create {kind} {name}", create, self.namespace, body, passthrough=(404, 409))
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(
                    f"namespace {self.namespace!r} does not exist in {self._where()}",
                    hint=f"create it: kubectl --context {self._context_name} create namespace {self.namespace}",
                ) from None
        current = self._read(f"read {kind} {name}", read, name, self.namespace)
        for _attempt in range(5):
            if current is None:  # deleted between our create and our read: try once more
                return self._call(f"create {kind} {name}", create, self.namespace, body)
            self._ensure_ours(kind, name, current)
            change = strategic_patch(last_applied(current.metadata.annotations), body)
            if self.hpa is not None and kind == "Deployment":
                change.get("spec", {}).pop("replicas", None)  # the HPA owns it now
            # Optimistic concurrency: the patch applies only to the version it was computed from. A 409
            # means the object moved on: when only its status did (same generation, same last-applied
            # configuration: a rollout in progress, say) the patch is computed again on the fresh
            # object; when someone changed what it should run (another mlctl, kubectl), it is refused.
            change.setdefault("metadata", {})["resourceVersion"] = current.metadata.resource_version
            try:
                return self._call(f"patch {kind} {name}", patch, name, self.namespace, change,
                                  _content_type=STRATEGIC, passthrough=(409,))
            except ApiException as exc:
                if exc.status != 409:
                    raise  # pragma: no cover - _call maps everything else
            fresh = self._read(f"read {kind} {name}", read, name, self.namespace)
            if fresh is not None and not _only_status_moved(current, fresh):
                raise OperationFailed(
                    f"{kind} {self.namespace}/{name} was changed by someone else while this deploy ran (it is no "
                    f"longer at resourceVersion {current.metadata.resource_version}); this change was not applied",
                    hint=f"see who changed it: {self._kubectl()} get {kind.lower()} {name} -o yaml "
                    "(metadata.managedFields); then run the command again",
                    details={"kind": kind, "name": name, "namespace": self.namespace, "status": 409},
                )
            current = fresh
        raise OperationFailed(f"{kind} {self.namespace}/{name} kept changing while this deploy ran; "
                              "this change was not applied", hint="run the command again",
                              details={"kind": kind, "name": name, "namespace": self.namespace, "status": 409})

    def _ensure_ours(self, kind: str, name: str, current: Any) -> None:
        """Raise unless ``current`` carries ``app.kubernetes.io/managed-by: mlctl``."""
        owner = (current.metadata.labels or {}).get(LABEL_MANAGED_BY)
        if owner != MANAGED_BY:
            raise OperationFailed(
                f"{kind} {self.namespace}/{name} exists and was not created by mlctl "
                f"({LABEL_MANAGED_BY}={owner!r}); leaving it alone",
                hint=f"choose another deployment name, or remove it yourself: "
                f"{self._kubectl()} delete {kind.lower()} {name}",
            )

    def _delete_managed(self, name: str, *objects: tuple[str, Any, Any]) -> bool:
        """Delete the ``(kind, read, delete)`` objects called ``name`` if mlctl created them.

        All are checked before any is deleted; False when none existed. 404s are fine.
        """
        from kubernetes.client.exceptions import ApiException

        found = []
        for kind, read, delete in objects:
            current = self._read(f"read {kind} {name}", read, name, self.namespace)
            if current is not None:
                self._ensure_ours(kind, name, current)
                found.append((kind, delete))
        removed = False
        for kind, delete in found:
            try:
                self._call(f"delete {kind} {name}", delete, name, self.namespace, propagation_policy="Background")
                removed = True
            except ApiException as exc:
                if exc.status != 404:
                    raise  # pragma: no cover - _call maps everything else
        return removed

    # ------------------------------------------------------------------ rollout
    def _wait_rollout(self, name: str, deadline: float) -> Any:
        apps, _, _ = self._apis()
        interval = min(self.poll_interval_s, 0.2)
        while True:
            deployment = self._read(f"read Deployment {name}", apps.read_namespaced_deployment, name, self.namespace)
            if deployment is None:
                raise OperationFailed(
                    f"Deployment {self.namespace}/{name} disappeared during its rollout",
                    hint="something else deleted it; run the deploy again",
                )
            done, progress = rollout_progress(deployment)
            if done:
                return deployment
            stalled = _condition(deployment, "Progressing")
            if stalled is not None and stalled.reason == "ProgressDeadlineExceeded":
                raise self._rollout_failed(deployment, f"the cluster gave up: {stalled.message}")
            if time.monotonic() >= deadline:
                raise self._rollout_failed(deployment, f"not ready after {self.timeout_s:g}s: {progress}")
            time.sleep(interval)
            interval = min(interval * 1.5, self.poll_interval_s)

    def _rollout_failed(self, deployment: Any, why: str) -> OperationFailed:
        name = deployment.metadata.name
        problems = list(self._pod_problems(deployment))
        text = f"the rollout of Deployment {self.namespace}/{name} failed: {why}"
        if problems:
            text += "; " + "; ".join(problems[:5])
        return OperationFailed(
            text + ". The previous pods keep serving (maxUnavailable 0).",
            hint=f"{self._kubectl()} describe deployment {name}; `mlctl deploy logs {name}`; "
            f"`mlctl rollback {name}` returns to the previous release",
            details={
                "deployment": name,
                "namespace": self.namespace,
                "generation": deployment.metadata.generation,
                "observed_generation": deployment.status.observed_generation if deployment.status else None,
                "pods": problems,
            },
        )

    def _pod_problems(self, deployment: Any) -> Iterator[str]:
        """One line per pod that is not ready: waiting reasons, failing readiness."""
        _, core, _ = self._apis()
        selector = _selector_string(deployment)
        try:
            pods = self._call("list pods", core.list_namespaced_pod, self.namespace, label_selector=selector)
        except MlctlError:
            return
        for pod in pods.items:
            statuses = (pod.status.container_statuses if pod.status else None) or []
            for status in statuses:
                if status.ready:
                    continue
                waiting = status.state.waiting if status.state else None
                if waiting is not None:
                    reason = waiting.reason or "waiting"
                    extra = f": {waiting.message}" if waiting.message else ""
                    yield f"pod {pod.metadata.name} container {status.name} is {reason}{extra}"
                else:
                    yield f"pod {pod.metadata.name} container {status.name} is running but not ready (readiness probe)"
            if not statuses:
                yield f"pod {pod.metadata.name} is {pod.status.phase if pod.status else 'Pending'}"

    # ------------------------------------------------------------------ status, stop, logs, scale
    def status(self, name: str) -> DeploymentStatus | None:
        """The deployment's state from the cluster, or None when there is no such Deployment."""
        validate_name(name)
        apps, _, _ = self._apis()
        deployment = self._read(f"read Deployment {name}", apps.read_namespaced_deployment, name, self.namespace)
        return None if deployment is None else self._status_of(deployment)

    def _status_of(self, deployment: Any) -> DeploymentStatus:
        _, core, autoscaling = self._apis()
        meta, spec, st = deployment.metadata, deployment.spec, deployment.status
        name = meta.name
        annotations, labels = meta.annotations or {}, meta.labels or {}
        service = self._read(f"read Service {name}", core.read_namespaced_service, name, self.namespace)
        endpoint = None
        if service is not None and service.spec and service.spec.ports:
            endpoint = f"http://{name}.{self.namespace}.svc:{service.spec.ports[0].port}"
        desired = spec.replicas if spec.replicas is not None else 1
        ready = (st.ready_replicas if st else None) or 0
        done, progress = rollout_progress(deployment)
        if desired == 0 or ready == 0:
            health = "down"
        elif ready >= desired and done:
            health = "healthy"
        else:
            health = "degraded"
        containers = spec.template.spec.containers if spec.template and spec.template.spec else []
        container = next((c for c in containers if c.name == CONTAINER_NAME), containers[0] if containers else None)
        hpa = None
        found = self._read(
            f"read HorizontalPodAutoscaler {name}",
            autoscaling.read_namespaced_horizontal_pod_autoscaler,
            name,
            self.namespace,
        )
        if found is not None:
            hpa = {"min_replicas": found.spec.min_replicas, "max_replicas": found.spec.max_replicas}
        details: dict[str, Any] = {
            "context": self._context_name,
            "namespace": self.namespace,
            "uid": meta.uid,
            "generation": meta.generation,
            "observed_generation": st.observed_generation if st else None,
            "revision": annotations.get(REVISION_ANNOTATION),
            "resource_version": meta.resource_version,
            "updated_replicas": (st.updated_replicas if st else None) or 0,
            "available_replicas": (st.available_replicas if st else None) or 0,
            "rollout": "complete" if done else progress,
            "config_hash": annotations.get("mlctl.dev/config-hash"),
            "model_sha256": annotations.get("mlctl.dev/model-sha256"),
            "selector": _selector_string(deployment),
            "service": service.metadata.name if service is not None else None,
            "cluster_ip": service.spec.cluster_ip if service is not None and service.spec else None,
            "hpa": hpa,
        }
        return DeploymentStatus(
            name=name,
            target=self.target,
            model=annotations.get(ANNOTATION_MODEL_NAME) or labels.get(LABEL_NAME, ""),
            version=annotations.get(ANNOTATION_MODEL_VERSION) or labels.get(LABEL_VERSION, ""),
            alias=annotations.get(ANNOTATION_MODEL_ALIAS),
            replicas_desired=desired,
            replicas_ready=ready,
            endpoint=endpoint,
            health=health,
            digest=container.image if container is not None else None,
            details=details,
        )

    def stop(self, name: str) -> bool:
        """Delete the HPA, Service and Deployment mlctl created (pods follow); False when none existed."""
        validate_name(name)
        apps, core, autoscaling = self._apis()
        return self._delete_managed(
            name,
            (
                "HorizontalPodAutoscaler",
                autoscaling.read_namespaced_horizontal_pod_autoscaler,
                autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            ),
            ("Service", core.read_namespaced_service, core.delete_namespaced_service),
            ("Deployment", apps.read_namespaced_deployment, apps.delete_namespaced_deployment),
        )

    def logs(self, name: str, tail: int = 100) -> str:
        """The last ``tail`` lines of each of the deployment's pods, each line prefixed ``[pod/NAME]``."""
        from kubernetes.client.exceptions import ApiException

        validate_name(name)
        apps, core, _ = self._apis()
        deployment = self._read(f"read Deployment {name}", apps.read_namespaced_deployment, name, self.namespace)
        if deployment is None:
            raise NotFound(
                f"no deployment {name!r} in namespace {self.namespace} ({self._where()})",
                hint=f"{self._kubectl()} get deployments",
            )
        pods = self._call(
            "list pods", core.list_namespaced_pod, self.namespace, label_selector=_selector_string(deployment)
        )
        out: list[str] = []
        for pod in sorted(pods.items, key=lambda p: p.metadata.name):
            names = [c.name for c in pod.spec.containers] if pod.spec else []
            container = CONTAINER_NAME if CONTAINER_NAME in names else (names[0] if names else None)
            prefix = f"[pod/{pod.metadata.name}]"
            try:
                text = self._call(
                    f"read the log of pod {pod.metadata.name}",
                    core.read_namespaced_pod_log,
                    pod.metadata.name,
                    self.namespace,
                    container=container,
                    tail_lines=max(int(tail), 0),
                    passthrough=(400, 404),
                )
            except ApiException as exc:
                if exc.status == 400:  # the container has not started
                    out.append(f"{prefix} (no log yet: {_status_message(exc)})")
                continue  # 404: the pod went away meanwhile
            out.extend(f"{prefix} {line}" for line in (text or "").splitlines())
        return "\n".join(out) + ("\n" if out else "")

    def scale(self, name: str, replicas: int, *, wait: bool = True) -> DeploymentStatus:
        """Set the replica count through the ``scale`` subresource, then (by default) wait until ready.

        The patch carries the Deployment's ``resourceVersion`` as a precondition, as every patch
        of this target does: when the Deployment moved on meanwhile and only its status changed
        (a rollout in progress), the patch is sent again on the fresh version; when someone changed
        its spec, it is refused. A later ``apply`` sets the replicas of its spec again. Refused when
        an HPA manages the deployment, since it would undo the change, and for a Deployment that
        mlctl did not create.
        """
        from kubernetes.client.exceptions import ApiException

        validate_name(name)
        validate_replicas(replicas)
        apps, _, autoscaling = self._apis()
        missing = NotFound(f"no deployment {name!r} in namespace {self.namespace} ({self._where()})",
                           hint=f"{self._kubectl()} get deployments")
        current = self._read(f"read Deployment {name}", apps.read_namespaced_deployment, name, self.namespace)
        if current is None:
            raise missing
        self._ensure_ours("Deployment", name, current)
        hpa = self._read(
            f"read HorizontalPodAutoscaler {name}",
            autoscaling.read_namespaced_horizontal_pod_autoscaler,
            name,
            self.namespace,
        )
        if hpa is not None:
            raise UsageError(
                f"deployment {name} is autoscaled ({hpa.spec.min_replicas}..{hpa.spec.max_replicas} replicas by "
                f"HorizontalPodAutoscaler {name}); scaling it by hand would be undone",
                hint="change the HPA's min/max replicas and deploy again",
            )
        deadline = time.monotonic() + self.timeout_s
        for _attempt in range(5):
            body = {"metadata": {"resourceVersion": current.metadata.resource_version},
                    "spec": {"replicas": replicas}}
            try:
                self._call(f"scale Deployment {name}", apps.patch_namespaced_deployment_scale, name,
                           self.namespace, body, _content_type=MERGE, passthrough=(404, 409))
                break
            except ApiException as exc:
                if exc.status == 404:
                    raise missing from None
            fresh = self._read(f"read Deployment {name}", apps.read_namespaced_deployment, name, self.namespace)
            if fresh is None:
                raise missing
            if not _only_status_moved(current, fresh):
                raise OperationFailed(
                    f"Deployment {self.namespace}/{name} was changed by someone else while scaling it (it is no "
                    f"longer at resourceVersion {current.metadata.resource_version}); it was not scaled",
                    hint=f"see who changed it: {self._kubectl()} get deployment {name} -o yaml "
                    "(metadata.managedFields); then run the command again",
                    details={"kind": "Deployment", "name": name, "namespace": self.namespace, "status": 409},
                )
            current = fresh
        else:
            raise OperationFailed(f"Deployment {self.namespace}/{name} kept changing while scaling it; it was not "
                                  "scaled", hint="run the command again",
                                  details={"kind": "Deployment", "name": name, "namespace": self.namespace,
                                           "status": 409})
        if wait:
            return self._status_of(self._wait_rollout(name, deadline))
        status = self.status(name)
        assert status is not None
        return status


# --------------------------------------------------------------------------- helpers


def rollout_progress(deployment: Any) -> tuple[bool, str]:
    """``(done, what is awaited)`` for a Deployment, as ``kubectl rollout status`` judges it.

    Done when the controller has observed the current generation and every desired replica is
    updated, ready and available, with no old replica left.
    """
    meta, spec, st = deployment.metadata, deployment.spec, deployment.status
    desired = spec.replicas if spec.replicas is not None else 1
    observed = (st.observed_generation if st else None) or 0
    if observed < (meta.generation or 0):
        return False, "waiting for the deployment controller to observe the new generation"
    updated = (st.updated_replicas if st else None) or 0
    total = (st.replicas if st else None) or 0
    ready = (st.ready_replicas if st else None) or 0
    available = (st.available_replicas if st else None) or 0
    if updated < desired:
        return False, f"{updated} of {desired} new replicas have been updated"
    if total > updated:
        return False, f"{total - updated} old replicas are pending termination"
    if ready < desired:
        return False, f"{ready} of {desired} replicas are ready"
    if available < desired:
        return False, f"{available} of {desired} updated replicas are available"
    return True, "complete"


def _condition(deployment: Any, kind: str) -> Any:
    conditions = (deployment.status.conditions if deployment.status else None) or []
    return next((c for c in conditions if c.type == kind), None)


def _selector_string(deployment: Any) -> str:
    selector = deployment.spec.selector
    labels = (selector.match_labels if selector else None) or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _status_body(exc: Any) -> dict[str, Any]:
    import json

    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _status_message(exc: Any) -> str:
    return str(_status_body(exc).get("message") or exc.reason or exc.status)


def _short(exc: BaseException) -> str:
    """The useful end of a urllib3 error ("Connection refused"), not the whole retry story."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "]" in text and "Errno" in text:
        text = text.split("]", 1)[1].strip()
    return text[-200:]


def _only_status_moved(before: Any, after: Any) -> bool:
    """True when ``after`` differs from ``before`` in its status only: same generation (the spec is
    unchanged) and the same configuration last applied by mlctl."""
    return bool(
        getattr(before.metadata, "generation", None) == getattr(after.metadata, "generation", None)
        and last_applied(before.metadata.annotations) == last_applied(after.metadata.annotations)
        and getattr(before.metadata, "labels", None) == getattr(after.metadata, "labels", None)
    )
