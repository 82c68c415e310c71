"""A Kubernetes API test server, faithful for the endpoints mlctl calls.

No kube-apiserver can be installed on these machines, so the tests talk to this server with the
official ``kubernetes`` Python client. It keeps objects in memory and speaks the REST API as the
real server does for what mlctl uses:

* ``GET /version``, ``/healthz``, ``/readyz``, ``/livez`` (no authentication needed, as on a cluster);
* core ``v1``: ``namespaces`` (cluster scope), ``services``, ``configmaps``, ``pods`` (+ ``/log``);
  ``apps/v1``: ``deployments`` (+ ``/scale`` as ``autoscaling/v1`` Scale, ``/status`` read), ``replicasets``;
  ``autoscaling/v2``: ``horizontalpodautoscalers``;
* verbs: create (201), get, list (namespaced or across namespaces; ``labelSelector`` with ``=``,
  ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``; ``fieldSelector`` on ``metadata.name``,
  ``metadata.namespace``, ``status.phase``; ``limit``/``continue``), replace (PUT, with the
  ``resourceVersion`` precondition: 422 when missing, 409 Conflict when stale), delete (a
  ``Status`` for most kinds, the object for pods, services and namespaces, as the real API
  answers), and patch with ``application/strategic-merge-patch+json`` (each list merged or
  replaced as the ``x-kubernetes-patch-strategy`` and ``x-kubernetes-patch-merge-key`` of the
  Kubernetes OpenAPI document say, read by :mod:`tests.support.k8s_openapi` from the schemas
  kubernetes-validate ships; ``$patch``, ``$setElementOrder``, ``$deleteFromPrimitiveList``,
  ``$retainKeys`` directives), ``application/merge-patch+json`` (RFC 7386) and
  ``application/json-patch+json`` (RFC 6902: add, remove, replace, move, copy, test); ``dryRun=All``;
* bookkeeping: ``metadata.uid``, ``resourceVersion`` (one counter, bumped on every write),
  ``generation`` (bumped on spec changes for Deployments, ReplicaSets and HPAs),
  ``creationTimestamp``, API defaults (strategy, probes, pull policy, Service ``clusterIP``...),
  validation answered with 422 ``Invalid`` (missing name, selector not matching the template
  labels, immutable selector, bad names or label values, missing image...), ``Status`` bodies for
  400/401/403/404/405/409/415/422 with ``reason`` and ``code``;
* a controller loop (background thread) playing the deployment controller, the ReplicaSet
  controller, the kubelet, the HPA's min/max clamp and the garbage collector: for each Deployment
  a ReplicaSet per pod template (``pod-template-hash``; the ``deployment.kubernetes.io/revision``
  annotation, reused and renumbered on rollback), Pods with the template's labels and an owner
  reference to their ReplicaSet that turn Running and Ready after ``pod_ready_delay`` seconds,
  a RollingUpdate honouring maxSurge/maxUnavailable (or Recreate), and the Deployment's
  ``status`` (replicas, updated/ready/available/unavailableReplicas, observedGeneration,
  Available and Progressing conditions, ``ProgressDeadlineExceeded``). Zero counts are left out
  of ``status``, as the real API does.

Fault knobs (settable at start through ``KUBE_TEST_*`` environment variables or command-line flags,
and at run time with ``PUT /_test/config`` and a JSON body):

* ``unpullable_images``: fnmatch patterns; such pods stay Pending in ``ImagePullBackOff``;
* ``unready_images``: fnmatch patterns; such pods run but never pass their readiness probe
  (a rollout that never becomes ready);
* ``pod_ready_delay``: seconds from pod creation to Running and Ready;
* ``forbidden``: ``"verb:resource"`` pairs (``*`` allowed) answered with 403 Forbidden;
* ``token``: when set, every API call needs ``Authorization: Bearer <token>`` (else 401).

Pod logs are canned: a few lines per container naming the pod, the image and the command.

Not implemented (mlctl does not call them): watch, server-side apply, protobuf/CBOR, other
kinds and subresources, admission webhooks, graceful pod termination, authn other than tokens.

Run it on its own (loopback only) with ``python -m tests.support.kube_apiserver --port 6443
--kubeconfig /tmp/kubeconfig``, or in-process with :class:`KubeAPIServer`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import fnmatch
import hashlib
import ipaddress
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import k8s_openapi as openapi

JSON = dict[str, Any]
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
SERVER_VERSION = {  # the Kubernetes version whose OpenAPI schemas say how patches merge
    "major": openapi.KUBERNETES_VERSION.split(".")[0],
    "minor": openapi.KUBERNETES_VERSION.split(".")[1],
    "gitVersion": f"v{openapi.KUBERNETES_VERSION}.0-mlctl-test",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
PUBLIC_PATHS = {"/version", "/healthz", "/readyz", "/livez"}
REVISION = "deployment.kubernetes.io/revision"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- errors as Status


class ApiError(Exception):
    """An error answered with a ``kind: Status`` body."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> JSON:
        out: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclass(frozen=True)
class Kind:
    """One resource type: where it lives in the URL space and how it is named in messages."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def schema(self) -> openapi.Type:
        """The kind's type in the OpenAPI document: how strategic merge patches merge its lists."""
        return openapi.for_kind(self.api_version, self.kind)

    @property
    def qualified(self) -> str:
        """``deployments.apps``, ``services``: as the API names a resource in its messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def details(self, name: str | None = None, **extra: Any) -> JSON:
        """A Status body's ``details`` about this kind (and one object of it)."""
        out: JSON = {"name": name} if name is not None else {}
        out.update(kind=self.plural, **extra, **({"group": self.group} if self.group else {}))
        return out

    def not_found(self, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{self.qualified} "{name}" not found', self.details(name))

    def conflict(self, name: str) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {self.qualified} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            self.details(name),
        )

    def invalid(self, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
        """422 Invalid; causes are ``(field, reason, message)``."""
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        text = "; ".join(f"{f}: {m}" for f, _, m in causes)
        text = f"[{text}]" if len(causes) > 1 else text
        details: JSON = {
            "name": name,
            "kind": self.kind,
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes],
        }
        if self.group:
            details["group"] = self.group
        return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details)


NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICES = Kind("", "v1", "services", "Service")
CONFIGMAPS = Kind("", "v1", "configmaps", "ConfigMap")
PODS = Kind("", "v1", "pods", "Pod")
DEPLOYMENTS = Kind("apps", "v1", "deployments", "Deployment", generation=True)
REPLICASETS = Kind("apps", "v1", "replicasets", "ReplicaSet", generation=True)
HPAS = Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", generation=True)
SCALE = Kind("autoscaling", "v1", "scale", "Scale")  # the deployments/scale subresource's body
KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.plural): k for k in (NAMESPACES, SERVICES, CONFIGMAPS, PODS, DEPLOYMENTS, REPLICASETS, HPAS)
}

# --------------------------------------------------------------------------- patches

_DELETE = object()


def _field(schema: openapi.Type | None, name: str) -> openapi.Field | None:
    return schema.field(name) if schema is not None else None


def _merge_key(field: openapi.Field | None) -> str | None:
    """The key a list merges by; None for a list replaced whole or merged as a set of scalars."""
    return field.merge_key if field is not None and field.merges else None


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def strategic_merge_patch(original: Any, patch: Any, schema: openapi.Type | None = None) -> Any:
    """Apply a strategic merge patch to an object of type ``schema`` (None: merge maps, replace lists).

    Maps merge; a list the API types mark ``merge`` merges by its ``x-kubernetes-patch-merge-key``
    (a list of scalars without one merges as a set); other lists are replaced.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives(patch)
    if directive == "delete":
        return _DELETE
    if directive not in (None, "merge"):
        raise _bad_request(f"invalid $patch directive {directive!r}")
    result: JSON = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        field = _field(schema, key)
        of, merge_key = (field.type, _merge_key(field)) if field is not None else (None, None)
        if isinstance(value, list) and merge_key is not None:
            result[key] = _merge_list(result.get(key) or [], value, merge_key, of, key)
        elif isinstance(value, list) and field is not None and field.merges:
            current = list(result.get(key) or [])
            result[key] = current + [v for v in value if v not in current]
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, of)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    for key, value in patch.items():
        directive, _, field_name = key.partition("/")
        if directive == "$deleteFromPrimitiveList" and isinstance(result.get(field_name), list):
            result[field_name] = [v for v in result[field_name] if v not in value]
        elif directive == "$setElementOrder" and isinstance(result.get(field_name), list):
            result[field_name] = _reorder(result[field_name], value, _merge_key(_field(schema, field_name)))
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_list(original: list[Any], patch: list[Any], key: str, schema: openapi.Type | None, where: str) -> list[Any]:
    if any(isinstance(e, dict) and e.get("$patch") == "replace" for e in patch):
        return [_strip_directives(e) for e in patch if not (isinstance(e, dict) and "$patch" in e)]
    out = copy.deepcopy(original)
    for element in patch:
        if not isinstance(element, dict):
            raise _bad_request(f"{where}: elements must be objects with the key {key!r}")
        if key not in element:
            raise _bad_request(f"{where}: map in list has no merge key {key!r}")
        index = next((i for i, e in enumerate(out) if isinstance(e, dict) and e.get(key) == element[key]), None)
        if element.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append(_strip_directives(strategic_merge_patch({}, element, schema)))
        else:
            out[index] = strategic_merge_patch(out[index], element, schema)
    return out


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else _canonical(item)

    wanted = [ident(o) for o in order]
    ranked = sorted(
        enumerate(items), key=lambda p: (wanted.index(ident(p[1])) if ident(p[1]) in wanted else len(wanted), p[0])
    )
    return [item for _, item in ranked]


def json_merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise ApiError(422, "Invalid", f"jsonpatch: path {path!r} does not exist")
    return doc


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise _bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _bad_request(f"invalid json patch operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("move", "copy"):
            value = copy.deepcopy(_walk(doc, _pointer(op["from"]), op["from"]))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            doc = _add(_remove(doc, path), path, copy.deepcopy(op.get("value")))
        elif kind == "test":
            if _walk(doc, _pointer(path), path) != op.get("value"):
                raise ApiError(422, "Invalid", f"jsonpatch: test failed at {path!r}")
        else:
            raise _bad_request(f"unsupported json patch operation {kind!r}")
    return doc


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise ApiError(422, "Invalid", f"jsonpatch: index {last!r} out of range at {path!r}")
    else:
        raise ApiError(422, "Invalid", f"jsonpatch: cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1] if parts else ""
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent.pop(int(last))
    else:
        raise ApiError(422, "Invalid", f"jsonpatch: path {path!r} does not exist")
    return doc


# --------------------------------------------------------------------------- selectors

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A predicate over labels for a label selector string (equality- and set-based)."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for req in _split_selector(text):
        match = _SET_RE.match(req)
        if match:
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if op == "in":
                tests.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
            if not key:
                raise _bad_request(f"unable to parse requirement: {req!r}")
            tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif req.startswith("!"):
            missing = req[1:].strip()
            tests.append(lambda lb, k=missing: k not in lb)
        elif re.fullmatch(r"[A-Za-z0-9./_-]+", req):
            tests.append(lambda lb, k=req: k in lb)
        else:
            raise _bad_request(f"unable to parse requirement: {req!r}")
    return lambda labels: all(t(labels) for t in tests)


def _field_value(obj: JSON, field: str) -> str | None:
    node: Any = obj
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return None if node is None else str(node)


def parse_field_selector(text: str) -> Callable[[JSON], bool]:
    tests: list[Callable[[JSON], bool]] = []
    for req in _split_selector(text):
        negate = "!=" in req
        key, value = (s.strip() for s in re.split(r"!=|==|=", req, maxsplit=1))
        if key not in ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"):
            raise _bad_request(f'field label not supported: "{key}"')
        tests.append(lambda o, k=key, v=value, n=negate: (_field_value(o, k) == v) != n)
    return lambda obj: all(t(obj) for t in tests)


def selector_string(selector: JSON) -> str:
    """``matchLabels``/``matchExpressions`` as the label selector string the Scale status carries."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def selector_matches(selector: JSON, labels: dict[str, str]) -> bool:
    return parse_label_selector(selector_string(selector))(labels) if selector else False


# --------------------------------------------------------------------------- validation and defaults

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class Causes(list[tuple[str, str, str]]):
    """The causes of a 422 Invalid, ``(field, reason, message)``, worded as the real API words them."""

    def invalid(self, field: str, message: str) -> None:
        self.append((field, "FieldValueInvalid", f"Invalid value: {message}"))

    def required(self, field: str) -> None:
        self.append((field, "FieldValueRequired", "Required value"))

    def unsupported(self, field: str, value: Any, supported: str | None = None) -> None:
        message = f'Unsupported value: "{value}"' + (f": supported values: {supported}" if supported else "")
        self.append((field, "FieldValueNotSupported", message))


def _port_number(value: Any) -> bool:
    return isinstance(value, int) and 0 < value < 65536


def _port_name(value: Any) -> bool:
    return bool(_PORT_NAME.match(str(value))) and len(str(value)) <= 15


def _check_name(name: str, kind: Kind, causes: Causes) -> None:
    pattern, limit, what = _DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"
    if kind in (SERVICES,):
        pattern, limit, what = _DNS1035_LABEL, 63, "a DNS-1035 label"
    elif kind is NAMESPACES:
        pattern, limit, what = _DNS1123_LABEL, 63, "a lowercase RFC 1123 label"
    if len(name) > limit or not pattern.match(name):
        causes.invalid("metadata.name", f'"{name}": must be {what}')


def _check_labels(labels: Any, field: str, causes: Causes) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        causes.invalid(field, "must be a map of strings")
        return
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key.rsplit("/", 1)[0] if "/" in key else ""
        if len(name) > 63 or not _LABEL_NAME.match(name) or (prefix and not _DNS1123_SUBDOMAIN.match(prefix)):
            causes.invalid(field, f'"{key}": name part must be a valid label key')
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            detail = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
            causes.invalid(field, f'"{value}": {detail}')


def _check_quantity(value: Any, field: str, causes: Causes) -> None:
    if not isinstance(value, (str, int, float)) or not _QUANTITY.match(str(value)):
        causes.invalid(field, f'"{value}": must match the regular expression of a quantity')


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(probe: JSON | None) -> None:
    if not probe:
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_pod_spec(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        if isinstance(container.get("image"), str):
            container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            _default_probe(container.get(probe))


def _validate_pod_spec(spec: Any, field: str, causes: Causes) -> None:
    if not isinstance(spec, dict):
        causes.required(field)
        return
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.required(f"{field}.containers")
        return
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{field}.containers[{i}]"
        if not isinstance(container, dict):
            causes.invalid(where, "must be an object")
            continue
        name = container.get("name")
        if not name:
            causes.required(f"{where}.name")
        elif not isinstance(name, str) or not _DNS1123_LABEL.match(name):
            causes.invalid(f"{where}.name", f'"{name}": must be a DNS label')
        elif name in seen:
            causes.append((f"{where}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        else:
            seen.add(name)
        if not container.get("image"):
            causes.required(f"{where}.image")
        for j, port in enumerate(container.get("ports") or []):
            if not _port_number(port.get("containerPort")):
                message = f"{port.get('containerPort')}: must be between 1 and 65535, inclusive"
                causes.invalid(f"{where}.ports[{j}].containerPort", message)
            if "name" in port and not _port_name(port["name"]):
                causes.invalid(f"{where}.ports[{j}].name", f'"{port["name"]}": must be an IANA_SVC_NAME')
        for kind in ("requests", "limits"):
            for res, value in ((container.get("resources") or {}).get(kind) or {}).items():
                _check_quantity(value, f"{where}.resources.{kind}[{res}]", causes)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            handler = (container.get(probe) or {}).get("httpGet")
            if handler is not None:
                port = handler.get("port")
                if not (_port_number(port) or (isinstance(port, str) and _port_name(port))):
                    causes.invalid(
                        f"{where}.{probe}.httpGet.port", f"{port!r}: must be a port number or an IANA_SVC_NAME"
                    )
        for j, env in enumerate(container.get("env") or []):
            if not env.get("name"):
                causes.required(f"{where}.env[{j}].name")


def _defaults_and_validation(kind: Kind, obj: JSON, old: JSON | None) -> None:
    """Fill in the API defaults, then raise 422 for what the real API rejects."""
    meta = obj["metadata"]
    causes = Causes()
    _check_name(meta["name"], kind, causes)
    _check_labels(meta.get("labels"), "metadata.labels", causes)
    spec = obj.get("spec")
    if kind is DEPLOYMENTS:
        if not isinstance(spec, dict):
            raise kind.invalid(meta["name"], [("spec", "FieldValueRequired", "Required value")])
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
            if (
                _int_or_percent(rolling["maxSurge"], 100, True) == 0
                and _int_or_percent(rolling["maxUnavailable"], 100, False) == 0
            ):
                causes.invalid("spec.strategy.rollingUpdate.maxUnavailable", "0: may not be 0 when `maxSurge` is 0")
        elif strategy["type"] != "Recreate":
            causes.unsupported("spec.strategy.type", strategy["type"], '"Recreate", "RollingUpdate"')
        elif "rollingUpdate" in strategy:
            message = "Forbidden: may not be specified when strategy `type` is 'Recreate'"
            causes.append(("spec.strategy.rollingUpdate", "FieldValueForbidden", message))
        if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
            causes.invalid("spec.replicas", "must be greater than or equal to 0")
        selector = spec.get("selector")
        template = spec.get("template") if isinstance(spec.get("template"), dict) else None
        if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.required("spec.selector")
        elif template is not None:
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not selector_matches(selector, labels):
                message = f"{json.dumps(labels)}: `selector` does not match template `labels`"
                causes.invalid("spec.template.metadata.labels", message)
        if template is None:
            causes.required("spec.template")
        else:
            _check_labels((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels", causes)
            pod_spec = template.get("spec")
            if isinstance(pod_spec, dict):
                _default_pod_spec(pod_spec)
                if pod_spec.get("restartPolicy") != "Always":
                    causes.unsupported("spec.template.spec.restartPolicy", pod_spec.get("restartPolicy"), '"Always"')
            _validate_pod_spec(pod_spec, "spec.template.spec", causes)
        if old is not None and old["spec"].get("selector") != spec.get("selector"):
            causes.invalid("spec.selector", f"{json.dumps(spec.get('selector'))}: field is immutable")
    elif kind is SERVICES:
        if not isinstance(spec, dict):
            spec = obj["spec"] = {}
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.unsupported("spec.type", spec["type"])
        ports = spec.get("ports") or []
        if not ports and spec["type"] != "ExternalName":
            causes.required("spec.ports")
        for i, port in enumerate(ports):
            if not _port_number(port.get("port")):
                causes.invalid(f"spec.ports[{i}].port", f"{port.get('port')}: must be between 1 and 65535, inclusive")
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if len(ports) > 1 and not port.get("name"):
                causes.required(f"spec.ports[{i}].name")
        if spec["type"] != "ExternalName":
            if old is not None and old.get("spec", {}).get("clusterIP"):
                if spec.get("clusterIP") not in (None, "", old["spec"]["clusterIP"]):
                    causes.invalid("spec.clusterIP", f'"{spec["clusterIP"]}": field is immutable')
                spec["clusterIP"] = old["spec"]["clusterIP"]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind is HPAS:
        if not isinstance(spec, dict):
            raise kind.invalid(meta["name"], [("spec", "FieldValueRequired", "Required value")])
        ref = spec.get("scaleTargetRef") or {}
        for key in ("kind", "name"):
            if not ref.get(key):
                causes.required(f"spec.scaleTargetRef.{key}")
        spec.setdefault("minReplicas", 1)
        low, high = spec.get("minReplicas"), spec.get("maxReplicas")
        if not isinstance(high, int) or high < 1:
            causes.invalid("spec.maxReplicas", "must be greater than 0")
        elif not isinstance(low, int) or low < 1 or low > high:
            causes.invalid("spec.minReplicas", "must be greater than 0 and at most maxReplicas")
        for i, metric in enumerate(spec.get("metrics") or []):
            if metric.get("type") not in ("Resource", "Pods", "Object", "External", "ContainerResource"):
                causes.append((f"spec.metrics[{i}].type", "FieldValueRequired", "Required value: must specify a type"))
        obj.setdefault("status", {"currentReplicas": 0, "desiredReplicas": 0})
    elif kind is PODS:
        if isinstance(spec, dict):
            _default_pod_spec(spec)
        _validate_pod_spec(spec, "spec", causes)
        obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
    elif kind is CONFIGMAPS:
        for key, value in (obj.get("data") or {}).items():
            if not isinstance(value, str):
                causes.invalid(f"data[{key}]", "must be a string")
    elif kind is NAMESPACES:
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif kind is REPLICASETS and isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        _default_pod_spec(spec["template"].setdefault("spec", {}))
    if causes:
        raise kind.invalid(meta["name"], causes)


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        share = int(text[:-1]) * total / 100
        return int(-(-share // 1)) if round_up else int(share // 1)
    return int(text)


# --------------------------------------------------------------------------- the cluster


@dataclass
class Settings:
    """Fault knobs and timings; see the module docstring."""

    pod_ready_delay: float = 0.3
    tick: float = 0.05
    unpullable_images: tuple[str, ...] = ()
    unready_images: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    token: str | None = None

    def update(self, data: JSON) -> None:
        for key, value in data.items():
            if key not in self.__dataclass_fields__:
                raise _bad_request(f"unknown setting {key!r}")
            setattr(self, key, tuple(value) if isinstance(value, list) else value)

    def to_dict(self) -> JSON:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["token"] = "***" if self.token else None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls()

        def patterns(name: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())

        settings.unpullable_images = patterns("KUBE_TEST_UNPULLABLE_IMAGES")
        settings.unready_images = patterns("KUBE_TEST_UNREADY_IMAGES")
        settings.forbidden = patterns("KUBE_TEST_FORBIDDEN")
        if env.get("KUBE_TEST_POD_READY_DELAY"):
            settings.pod_ready_delay = float(env["KUBE_TEST_POD_READY_DELAY"])
        settings.token = env.get("KUBE_TEST_TOKEN") or None
        return settings


class Cluster:
    """The objects, the REST semantics over them, and the controllers; no HTTP in here."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.lock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {k.qualified: {} for k in KINDS.values()}
        self._rv = itertools.count(1)
        self._resource_version = 0
        self._ips = itertools.count(10)
        self._progress: dict[str, float] = {}  # deployment uid -> monotonic time of its last progress
        self._ready_at: dict[str, float] = {}  # pod uid -> monotonic time it turns ready
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(NAMESPACES, "", {"metadata": {"name": name}})

    # -- storage primitives
    def _next_rv(self) -> str:
        self._resource_version = next(self._rv)
        return str(self._resource_version)

    def _table(self, kind: Kind) -> dict[tuple[str, str], JSON]:
        return self._objects[kind.qualified]

    def _store(self, kind: Kind, obj: JSON) -> JSON:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._table(kind)[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
        return obj

    def _out(self, kind: Kind, obj: JSON) -> JSON:
        out = copy.deepcopy(obj)
        return {
            "kind": kind.kind,
            "apiVersion": kind.api_version,
            **{k: v for k, v in out.items() if k not in ("kind", "apiVersion")},
        }

    def _find(self, kind: Kind, namespace: str, name: str) -> JSON:
        obj = self._table(kind).get((namespace if kind.namespaced else "", name))
        if obj is None:
            raise kind.not_found(name)
        return obj

    # -- verbs
    def get(self, kind: Kind, namespace: str, name: str) -> JSON:
        with self.lock:
            return self._out(kind, self._find(kind, namespace, name))

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        cont: str = "",
    ) -> JSON:
        labels_ok = parse_label_selector(label_selector)
        fields_ok = parse_field_selector(field_selector)
        with self.lock:
            items = [
                self._out(kind, obj)
                for (ns, _), obj in sorted(self._table(kind).items())
                if (namespace is None or ns == namespace)
                and labels_ok(obj["metadata"].get("labels") or {})
                and fields_ok(obj)
            ]
            rv = str(self._resource_version)
        start = int(base64.b64decode(cont).decode()) if cont else 0
        meta: JSON = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        page = items[start : start + limit] if limit else items[start:]
        for item in page:  # list items carry no kind/apiVersion, as from the real API
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta, "items": page}

    def _check_body(self, kind: Kind, namespace: str, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise _bad_request(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml"
            )
        if body.get("apiVersion") not in (None, kind.api_version):
            raise _bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the expected "
                f"API version ({kind.api_version})"
            )
        if body.get("kind") not in (None, kind.kind):
            raise _bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind ({kind.kind})")
        body.pop("kind", None)
        body.pop("apiVersion", None)
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if kind.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return body

    def _namespace_exists(self, kind: Kind, namespace: str) -> None:
        if kind.namespaced and ("", namespace) not in self._table(NAMESPACES):
            raise NAMESPACES.not_found(namespace)

    def create(self, kind: Kind, namespace: str, body: Any, dry_run: bool = False) -> JSON:
        with self.lock:
            obj = self._check_body(kind, namespace, copy.deepcopy(body))
            meta = obj["metadata"]
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                else:
                    raise kind.invalid(
                        "",
                        [("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")],
                    )
            self._namespace_exists(kind, namespace)
            if (meta.get("namespace", ""), meta["name"]) in self._table(kind):
                message = f'{kind.qualified} "{meta["name"]}" already exists'
                raise ApiError(409, "AlreadyExists", message, kind.details(meta["name"]))
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
                meta.pop(key, None)
            _defaults_and_validation(kind, obj, None)
            if kind is SERVICES and obj["spec"]["type"] != "ExternalName" and not obj["spec"].get("clusterIP"):
                n = next(self._ips)
                obj["spec"]["clusterIP"] = str(ipaddress.ip_address("10.96.0.0") + n)
            if kind is SERVICES and obj["spec"].get("clusterIP"):
                obj["spec"]["clusterIPs"] = [obj["spec"]["clusterIP"]]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            if kind.generation:
                meta["generation"] = 1
            if kind is DEPLOYMENTS:
                obj["status"] = {}
            elif kind is REPLICASETS:
                obj["status"] = {"replicas": 0}
            if dry_run:
                meta["resourceVersion"] = ""
                return self._out(kind, obj)
            return self._out(kind, self._store(kind, obj))

    def _update(self, kind: Kind, old: JSON, new: JSON, dry_run: bool, subresource: str = "") -> JSON:
        """Shared by PUT and PATCH: server-owned fields kept, defaults applied, generation on spec change."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        if meta.get("name", old_meta["name"]) != old_meta["name"]:
            raise _bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({old_meta['name']})"
            )
        if kind.namespaced and meta.get("namespace") not in (None, old_meta.get("namespace")):
            raise _bad_request("the namespace of the provided object does not match the namespace sent on the request")
        rv = meta.get("resourceVersion")
        if rv and rv != old_meta["resourceVersion"]:
            raise kind.conflict(old_meta["name"])
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status")
            new = merged
        else:
            if "status" in old:  # the main resource never changes status
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
            _defaults_and_validation(kind, new, old)
            if kind is SERVICES and new["spec"].get("clusterIP"):
                new["spec"]["clusterIPs"] = [new["spec"]["clusterIP"]]
            if kind.generation and _canonical(new.get("spec")) != _canonical(old.get("spec")):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
        new.pop("kind", None)
        new.pop("apiVersion", None)
        if _canonical(new) == _canonical(old):
            return self._out(kind, old)  # a no-op write keeps the resourceVersion, as the real API does
        if dry_run:
            return self._out(kind, new)
        return self._out(kind, self._store(kind, new))

    def replace(
        self, kind: Kind, namespace: str, name: str, body: Any, dry_run: bool = False, subresource: str = ""
    ) -> JSON:
        with self.lock:
            old = self._find(kind, namespace, name)
            new = self._check_body(kind, namespace, copy.deepcopy(body))
            if not (new.get("metadata") or {}).get("resourceVersion"):
                raise kind.invalid(
                    name,
                    [
                        (
                            "metadata.resourceVersion",
                            "FieldValueInvalid",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
            return self._update(kind, old, new, dry_run, subresource)

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        body: Any,
        content_type: str,
        dry_run: bool = False,
        subresource: str = "",
    ) -> JSON:
        with self.lock:
            old = self._find(kind, namespace, name)
            current = self._out(kind, old)
            new = _apply_patch(current, body, content_type, kind.schema)
            if not isinstance(new, dict):
                raise _bad_request("the patch did not produce an object")
            return self._update(kind, old, new, dry_run, subresource)

    def delete(
        self, kind: Kind, namespace: str, name: str, propagation: str | None = None, dry_run: bool = False
    ) -> JSON:
        with self.lock:
            obj = self._find(kind, namespace, name)
            meta = obj["metadata"]
            if not dry_run:
                del self._table(kind)[(meta.get("namespace", ""), name)]
                self._next_rv()
                if kind is NAMESPACES:
                    for table in self._objects.values():
                        for key in [k for k in table if k[0] == name]:
                            del table[key]
                if propagation == "Orphan":
                    self._orphan(meta["uid"])
            if kind in (PODS, SERVICES, NAMESPACES):  # these answer with the object, the others with a Status
                out = self._out(kind, obj)
                if kind is not SERVICES:
                    out["metadata"]["deletionTimestamp"] = _now()
                if kind is PODS:
                    out["metadata"]["deletionGracePeriodSeconds"] = 0
                if kind is NAMESPACES:
                    out["status"] = {"phase": "Terminating"}
                return out
            details = kind.details(name, uid=meta["uid"])
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _orphan(self, owner_uid: str) -> None:
        for table in self._objects.values():
            for obj in table.values():
                refs = obj["metadata"].get("ownerReferences") or []
                kept = [r for r in refs if r.get("uid") != owner_uid]
                if len(kept) != len(refs):
                    obj["metadata"]["ownerReferences"] = kept

    # -- scale subresource (autoscaling/v1 Scale)
    def get_scale(self, namespace: str, name: str) -> JSON:
        with self.lock:
            dep = self._find(DEPLOYMENTS, namespace, name)
            meta = dep["metadata"]
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
                "spec": {"replicas": dep["spec"].get("replicas", 1)},
                "status": {
                    "replicas": dep.get("status", {}).get("replicas", 0),
                    "selector": selector_string(dep["spec"]["selector"]),
                },
            }

    def set_scale(self, namespace: str, name: str, body: Any, content_type: str | None, dry_run: bool = False) -> JSON:
        with self.lock:
            current = self.get_scale(namespace, name)
            if content_type is None:  # PUT
                if not isinstance(body, dict) or body.get("kind") not in (None, "Scale"):
                    raise _bad_request("the body must be an autoscaling/v1 Scale")
                new = body
                rv = (body.get("metadata") or {}).get("resourceVersion")
                if rv and rv != current["metadata"]["resourceVersion"]:
                    raise DEPLOYMENTS.conflict(name)
            else:  # a resourceVersion in the patch is a precondition, as on the main resource
                new = _apply_patch(current, body, content_type, SCALE.schema)
                rv = (new.get("metadata") or {}).get("resourceVersion")
                if rv and rv != current["metadata"]["resourceVersion"]:
                    raise DEPLOYMENTS.conflict(name)
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                message = f"Invalid value: {replicas}: must be greater than or equal to 0"
                raise SCALE.invalid(name, [("spec.replicas", "FieldValueInvalid", message)])
            dep = self._find(DEPLOYMENTS, namespace, name)
            patched = copy.deepcopy(dep)
            patched["spec"]["replicas"] = replicas
            self._update(DEPLOYMENTS, dep, patched, dry_run)
            out = self.get_scale(namespace, name)
            out["spec"]["replicas"] = replicas
            return out

    # -- pod logs
    def pod_log(self, namespace: str, name: str, container: str | None, tail: int | None) -> str:
        with self.lock:
            pod = self._find(PODS, namespace, name)
            containers = [c["name"] for c in pod["spec"]["containers"]]
            if container is None:
                if len(containers) > 1:
                    raise _bad_request(
                        f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                    )
                container = containers[0]
            if container not in containers:
                raise _bad_request(f"container {container} is not valid for pod {name}")
            status = next(
                (s for s in (pod.get("status") or {}).get("containerStatuses") or [] if s["name"] == container), None
            )
            waiting = ((status or {}).get("state") or {}).get("waiting")
            if status is None or waiting:
                reason = (waiting or {}).get("reason", "ContainerCreating")
                text = "trying and failing to pull image" if reason in ("ErrImagePull", "ImagePullBackOff") else reason
                raise _bad_request(f'container "{container}" in pod "{name}" is waiting to start: {text}')
            spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
            started = status["state"]["running"]["startedAt"]
            argv = " ".join([*(spec.get("command") or []), *(spec.get("args") or [])]) or "(image entrypoint)"
            lines = [
                f"{started} INFO pod {name} container {container} starting",
                f"{started} INFO image {spec['image']}",
                f"{started} INFO exec {argv}",
            ]
            for port in spec.get("ports") or []:
                lines.append(f"{started} INFO listening on 0.0.0.0:{port['containerPort']}")
            probe = (spec.get("readinessProbe") or {}).get("httpGet")
            if probe:
                code = 200 if status.get("ready") else 503
                lines.append(f'{started} INFO "GET {probe.get("path", "/")} HTTP/1.1" {code}')
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "".join(line + "\n" for line in lines)

    # -- controllers
    def reconcile(self) -> None:
        """One pass of the controllers: HPA clamp, deployments, kubelet, garbage collection."""
        with self.lock:
            now = time.monotonic()
            self._collect_garbage()
            for hpa in list(self._table(HPAS).values()):
                self._reconcile_hpa(hpa)
            for dep in list(self._table(DEPLOYMENTS).values()):
                self._reconcile_deployment(dep, now)
            for pod in list(self._table(PODS).values()):
                self._kubelet(pod, now)
            for dep in list(self._table(DEPLOYMENTS).values()):
                self._deployment_status(dep, now)

    def _collect_garbage(self) -> None:
        alive = {obj["metadata"]["uid"] for table in self._objects.values() for obj in table.values()}
        changed = True
        while changed:
            changed = False
            for kind in (REPLICASETS, PODS):
                table = self._table(kind)
                for key, obj in list(table.items()):
                    refs = obj["metadata"].get("ownerReferences") or []
                    if refs and not any(r.get("uid") in alive for r in refs):
                        del table[key]
                        alive.discard(obj["metadata"]["uid"])
                        self._next_rv()
                        changed = True

    def _owned(self, kind: Kind, owner: JSON) -> list[JSON]:
        uid, ns = owner["metadata"]["uid"], owner["metadata"].get("namespace")
        return [
            obj
            for (obj_ns, _), obj in sorted(self._table(kind).items())
            if obj_ns == ns and any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])
        ]

    def _reconcile_hpa(self, hpa: JSON) -> None:
        ref, spec = hpa["spec"].get("scaleTargetRef") or {}, hpa["spec"]
        if ref.get("kind") != "Deployment":
            return
        dep = self._table(DEPLOYMENTS).get((hpa["metadata"]["namespace"], ref.get("name")))
        if dep is None:
            return
        current = dep["spec"].get("replicas", 1)
        desired = min(max(current, spec.get("minReplicas", 1)), spec["maxReplicas"]) if current else 0
        if desired != current:
            new = copy.deepcopy(dep)
            new["spec"]["replicas"] = desired
            new["metadata"]["generation"] = dep["metadata"].get("generation", 1) + 1
            self._store(DEPLOYMENTS, new)
        status = {"currentReplicas": dep.get("status", {}).get("replicas", 0), "desiredReplicas": desired}
        if desired != current:
            status["lastScaleTime"] = _now()
        else:
            status.update({k: v for k, v in (hpa.get("status") or {}).items() if k == "lastScaleTime"})
        status["observedGeneration"] = hpa["metadata"].get("generation", 1)
        if hpa.get("status") != status:
            hpa["status"] = status
            self._store(HPAS, hpa)

    def _reconcile_deployment(self, dep: JSON, now: float) -> None:
        spec, meta = dep["spec"], dep["metadata"]
        template = spec["template"]
        hash_ = _template_hash(template)
        sets = self._owned(REPLICASETS, dep)
        new_rs = next((rs for rs in sets if rs["metadata"]["labels"].get("pod-template-hash") == hash_), None)
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in sets]
        if spec.get("paused"):
            return
        if new_rs is None:
            new_rs = self._new_replicaset(dep, template, hash_, max(revisions, default=0) + 1)
            self._progress[meta["uid"]] = now
        elif int(new_rs["metadata"]["annotations"].get(REVISION, "0")) != max(revisions):
            new_rs["metadata"]["annotations"][REVISION] = str(max(revisions) + 1)  # rollback: renumbered
            self._store(REPLICASETS, new_rs)
            self._progress[meta["uid"]] = now
        revision = new_rs["metadata"]["annotations"][REVISION]
        if (meta.get("annotations") or {}).get(REVISION) != revision:
            meta.setdefault("annotations", {})[REVISION] = revision
            self._store(DEPLOYMENTS, dep)
        old_sets = [rs for rs in sets if rs is not new_rs]
        desired = spec.get("replicas", 1)
        new_pods = self._owned(PODS, new_rs)
        old_pods = [p for rs in old_sets for p in self._owned(PODS, rs)]
        ready = sum(1 for p in new_pods + old_pods if _pod_ready(p))
        created = deleted = 0
        if spec["strategy"]["type"] == "Recreate":
            for pod in old_pods:
                self._delete_pod(pod)
                deleted += 1
            if not old_pods:
                for _ in range(desired - len(new_pods)):
                    self._new_pod(new_rs, now)
                    created += 1
        else:
            rolling = spec["strategy"].get("rollingUpdate") or {}
            surge = _int_or_percent(rolling.get("maxSurge", "25%"), desired, True)
            unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"), desired, False)
            if surge == 0 and unavailable == 0:
                unavailable = 1
            if len(new_pods) < desired:
                room = desired + surge - len(new_pods) - len(old_pods)
                for _ in range(max(0, min(desired - len(new_pods), room))):
                    self._new_pod(new_rs, now)
                    created += 1
            elif len(new_pods) > desired:
                for pod in sorted(new_pods, key=_pod_ready)[: len(new_pods) - desired]:
                    if _pod_ready(pod):
                        ready -= 1
                    self._delete_pod(pod)
                    deleted += 1
            # old pods: unready ones go first and freely; ready ones while enough stay available
            for pod in [p for p in old_pods if not _pod_ready(p)]:
                self._delete_pod(pod)
                deleted += 1
            can_remove = ready - (desired - unavailable)
            for pod in [p for p in old_pods if _pod_ready(p)][: max(0, can_remove)]:
                self._delete_pod(pod)
                deleted += 1
        for rs in sets:
            count = len(self._owned(PODS, rs))
            rs_status = {
                k: v
                for k, v in {
                    "replicas": count,
                    "readyReplicas": sum(1 for p in self._owned(PODS, rs) if _pod_ready(p)),
                    "availableReplicas": sum(1 for p in self._owned(PODS, rs) if _pod_ready(p)),
                    "fullyLabeledReplicas": count,
                }.items()
                if v or k == "replicas"  # ReplicaSetStatus.replicas has no omitempty
            }
            rs_status["observedGeneration"] = rs["metadata"].get("generation", 1)
            target = desired if rs is new_rs else 0
            if rs["spec"].get("replicas") != target or rs.get("status") != rs_status:
                if rs["spec"].get("replicas") != target:
                    rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
                    rs["spec"]["replicas"] = target
                    rs_status["observedGeneration"] = rs["metadata"]["generation"]
                rs["status"] = rs_status
                self._store(REPLICASETS, rs)
        limit = spec.get("revisionHistoryLimit", 10)
        empty_old = [rs for rs in old_sets if not self._owned(PODS, rs)]
        for rs in sorted(empty_old, key=lambda r: int(r["metadata"]["annotations"].get(REVISION, "0")))[
            : max(0, len(empty_old) - limit)
        ]:
            del self._table(REPLICASETS)[(rs["metadata"]["namespace"], rs["metadata"]["name"])]
        if created or deleted:
            self._progress[meta["uid"]] = now

    def _new_replicaset(self, dep: JSON, template: JSON, hash_: str, revision: int) -> JSON:
        meta = dep["metadata"]
        labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": hash_}
        pod_template = copy.deepcopy(template)
        pod_template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = hash_
        rs = {
            "metadata": {
                "name": f"{meta['name']}-{hash_}",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(dep["spec"].get("replicas", 1)),
                },
                "ownerReferences": [_owner_ref(DEPLOYMENTS, dep)],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "generation": 1,
            },
            "spec": {"replicas": 0, "selector": selector, "template": pod_template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        return self._store(REPLICASETS, rs)

    def _new_pod(self, rs: JSON, now: float) -> JSON:
        template = rs["spec"]["template"]
        suffix = "".join(_SAFE[b % len(_SAFE)] for b in uuid.uuid4().bytes[:5])
        spec = copy.deepcopy(template.get("spec") or {})
        spec["nodeName"] = "kube-test-node"
        pod = {
            "metadata": {
                "name": f"{rs['metadata']['name']}-{suffix}",
                "generateName": f"{rs['metadata']['name']}-",
                "namespace": rs["metadata"]["namespace"],
                "labels": copy.deepcopy((template.get("metadata") or {}).get("labels") or {}),
                "annotations": copy.deepcopy((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [_owner_ref(REPLICASETS, rs)],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
            },
            "spec": spec,
            "status": {
                "phase": "Pending",
                "qosClass": _qos_class(spec),
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}],
                "hostIP": "10.0.0.1",
                "containerStatuses": [
                    _container_status(c["name"], c["image"], {"waiting": {"reason": "ContainerCreating"}})
                    for c in spec.get("containers") or []
                ],
            },
        }
        self._ready_at[pod["metadata"]["uid"]] = now + self.settings.pod_ready_delay
        return self._store(PODS, pod)

    def _delete_pod(self, pod: JSON) -> None:
        del self._table(PODS)[(pod["metadata"]["namespace"], pod["metadata"]["name"])]
        self._ready_at.pop(pod["metadata"]["uid"], None)
        self._next_rv()

    def _kubelet(self, pod: JSON, now: float) -> None:
        """Move a pod to Running and Ready (or ImagePullBackOff / never ready) once its delay is over."""
        if now < self._ready_at.get(pod["metadata"]["uid"], 0.0):
            return
        status = pod["status"]
        old = _canonical(status)
        started = status.get("startTime") or _now()

        def matches(patterns: tuple[str, ...], image: str) -> bool:
            return any(fnmatch.fnmatchcase(image, p) for p in patterns)

        statuses = []
        for container in pod["spec"]["containers"]:
            name, image = container["name"], container["image"]
            previous = next((s for s in status.get("containerStatuses") or [] if s["name"] == name), {})
            if matches(self.settings.unpullable_images, image):
                pulling = previous.get("state", {}).get("waiting", {}).get("reason") in (
                    "ErrImagePull",
                    "ImagePullBackOff",
                )
                reason = "ImagePullBackOff" if pulling else "ErrImagePull"
                state = {"waiting": {"reason": reason, "message": f'Back-off pulling image "{image}"'}}
                statuses.append(_container_status(name, image, state))
                continue
            running = previous.get("state", {}).get("running") or {"startedAt": started}
            ids = {
                "imageID": f"docker-pullable://{image}@sha256:" + hashlib.sha256(image.encode()).hexdigest(),
                "containerID": "containerd://" + hashlib.sha256(pod["metadata"]["uid"].encode()).hexdigest(),
            }
            ready = not matches(self.settings.unready_images, image)
            statuses.append(_container_status(name, image, {"running": running}, ready=ready, **ids))
        all_running = all("running" in s["state"] for s in statuses)
        all_ready = all(s["ready"] for s in statuses)
        transition = (
            next((c.get("lastTransitionTime") for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
            or _now()
        )

        def condition(kind: str, ok: bool, reason: str | None = None) -> JSON:
            out = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": transition}
            if not ok and reason:
                out["reason"] = reason
            return out

        status.update(
            {
                "phase": "Running" if all_running else "Pending",
                "podIP": status.get("podIP") or f"10.244.0.{2 + (int(pod['metadata']['uid'][:4], 16) % 250)}",
                "startTime": started,
                "containerStatuses": statuses,
                "conditions": [
                    condition("PodReadyToStartContainers", True),
                    condition("Initialized", True),
                    condition("Ready", all_ready, "ContainersNotReady"),
                    condition("ContainersReady", all_ready, "ContainersNotReady"),
                    condition("PodScheduled", True),
                ],
            }
        )
        status["podIPs"] = [{"ip": status["podIP"]}]
        if _canonical(status) != old:
            self._store(PODS, pod)

    def _deployment_status(self, dep: JSON, now: float) -> None:
        spec, meta = dep["spec"], dep["metadata"]
        sets = self._owned(REPLICASETS, dep)
        hash_ = _template_hash(spec["template"])
        pods = [p for rs in sets for p in self._owned(PODS, rs)]
        new_pods = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == hash_]
        desired = spec.get("replicas", 1)
        ready = sum(1 for p in pods if _pod_ready(p))
        counts = {
            "replicas": len(pods),
            "updatedReplicas": len(new_pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, len(pods) - ready),
        }
        status: JSON = {k: v for k, v in counts.items() if v}
        status["observedGeneration"] = meta.get("generation", 1)
        rolling = spec["strategy"].get("rollingUpdate") or {}
        max_unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"), desired, False) if rolling else 0
        old_conditions = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
        complete = len(new_pods) == desired and len(pods) == desired and ready >= desired
        stamp = _now()

        def condition(kind: str, ok: bool, reason: str, message: str) -> JSON:
            previous = old_conditions.get(kind, {})
            changed = previous.get("status") != ("True" if ok else "False")
            return {
                "type": kind,
                "status": "True" if ok else "False",
                "lastUpdateTime": stamp if changed or previous.get("reason") != reason else previous["lastUpdateTime"],
                "lastTransitionTime": stamp if changed else previous.get("lastTransitionTime", stamp),
                "reason": reason,
                "message": message,
            }

        available = ready >= desired - max_unavailable
        name = meta["name"]
        rs_name = f"{name}-{hash_}"
        conditions = [
            condition(
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            )
        ]
        last = self._progress.setdefault(meta["uid"], now)
        if (dep.get("status") or {}).get("readyReplicas", 0) != ready:
            last = self._progress[meta["uid"]] = now
        if complete:
            progressing = condition(
                "Progressing", True, "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.'
            )
        elif now - last > spec.get("progressDeadlineSeconds", 600):
            progressing = condition(
                "Progressing", False, "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.'
            )
        else:
            progressing = condition("Progressing", True, "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        conditions.append(progressing)
        status["conditions"] = conditions
        if _canonical(dep.get("status")) != _canonical(status):
            dep["status"] = status
            self._store(DEPLOYMENTS, dep)

    # -- the HTTP surface, as a plain function
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, str]:
        """Answer one request: ``(status code, JSON body or text, content type)``."""
        try:
            return self._route(method, path.rstrip("/") or "/", query, body, headers)
        except ApiError as exc:
            return exc.code, exc.body(), "application/json"

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, str]:
        if path == "/version" and method == "GET":
            return 200, SERVER_VERSION, "application/json"
        if path in PUBLIC_PATHS and method == "GET":
            return 200, "ok", "text/plain"
        if path == "/_test/config":
            if method == "PUT":
                self.settings.update(_json_body(body))
            return 200, self.settings.to_dict(), "application/json"
        token = self.settings.token
        if token and headers.get("authorization", "") != f"Bearer {token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group_version, rest = "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind = KINDS.get((group_version, rest[0]))
        if kind is None or len(rest) > 3 or (namespace is not None and not kind.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        verb = _verb(method, name, query)
        self._authorize(verb, kind, sub, namespace)
        q = {k: v[-1] for k, v in query.items()}
        dry_run = q.get("dryRun") == "All"
        ns = namespace or ""
        ctype = (headers.get("content-type") or "application/json").split(";")[0].strip()
        if name is None:
            if method == "GET":
                if q.get("watch") in ("true", "1"):
                    raise _bad_request("watch is not supported by the Kubernetes API test server")
                scope, limit = (namespace if kind.namespaced else None), int(q.get("limit") or 0)
                selectors = q.get("labelSelector", ""), q.get("fieldSelector", "")
                return _ok(self.list(kind, scope, *selectors, limit, q.get("continue", "")))
            if method == "POST" and (namespace is not None or not kind.namespaced):
                return 201, self.create(kind, ns, _json_body(body), dry_run), "application/json"
            raise _method_not_allowed(method)
        if sub == "" or (sub == "status" and kind in (DEPLOYMENTS, REPLICASETS, HPAS, PODS, SERVICES)):
            if method == "GET":
                return _ok(self.get(kind, ns, name))
            if method == "PUT":
                return _ok(self.replace(kind, ns, name, _json_body(body), dry_run, sub))
            if method == "PATCH":
                return _ok(self.patch(kind, ns, name, _patch_body(body, ctype), ctype, dry_run, sub))
            if method == "DELETE" and sub == "":
                options = json.loads(body) if body.strip() else {}
                policy = q.get("propagationPolicy") or (options or {}).get("propagationPolicy")
                return _ok(self.delete(kind, ns, name, policy, dry_run))
            raise _method_not_allowed(method)
        if kind is DEPLOYMENTS and sub == "scale":
            if method == "GET":
                return _ok(self.get_scale(ns, name))
            if method == "PUT":
                return _ok(self.set_scale(ns, name, _json_body(body), None, dry_run))
            if method == "PATCH":
                return _ok(self.set_scale(ns, name, _patch_body(body, ctype), ctype, dry_run))
            raise _method_not_allowed(method)
        if kind is PODS and sub == "log" and method == "GET":
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            return 200, self.pod_log(ns, name, q.get("container"), tail), "text/plain"
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _authorize(self, verb: str, kind: Kind, sub: str, namespace: str | None) -> None:
        resource = f"{kind.plural}/{sub}" if sub else kind.plural
        for rule in self.settings.forbidden:
            rule_verb, _, rule_resource = rule.partition(":")
            if rule_verb in ("*", verb) and rule_resource in ("*", resource, kind.plural):
                group = f' in API group "{kind.group}"'
                where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{kind.qualified} is forbidden: User "system:serviceaccount:default:mlctl" cannot {verb} '
                    f'resource "{resource}"{group}{where}',
                    kind.details(),
                )


_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _template_hash(template: JSON) -> str:
    digest = hashlib.sha256(_canonical(template).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:10])


def _owner_ref(kind: Kind, owner: JSON) -> JSON:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _container_status(name: str, image: str, state: JSON, ready: bool = False, **ids: str) -> JSON:
    """One entry of a pod's ``containerStatuses``: ``started`` while it runs."""
    return {
        "name": name,
        "image": image,
        "imageID": "",
        **ids,
        "ready": ready,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }


def _canonical(value: Any) -> str:
    """``value`` as sorted JSON: to tell whether two documents differ."""
    return json.dumps(value, sort_keys=True)


def _pod_ready(pod: JSON) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or []
    )


def _qos_class(spec: JSON) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        set(r.get("limits") or {}) >= {"cpu", "memory"}
        and all((r.get("requests") or {}).get(k, v) == v for k, v in (r.get("limits") or {}).items())
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _verb(method: str, name: str | None, query: dict[str, list[str]]) -> str:
    if method == "GET":
        return "get" if name else ("watch" if query.get("watch") else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def _ok(body: JSON) -> tuple[int, JSON, str]:
    return 200, body, "application/json"


def _method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
    )


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _bad_request(f"the body of the request was in an unknown format: {exc}") from None


_PATCH_TYPES = (
    "application/strategic-merge-patch+json",
    "application/merge-patch+json",
    "application/json-patch+json",
)


def _patch_body(body: bytes, content_type: str) -> Any:
    if content_type not in _PATCH_TYPES:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted "
            f"media types include: {', '.join(_PATCH_TYPES)}",
        )
    return _json_body(body)


def _apply_patch(current: JSON, patch: Any, content_type: str, schema: openapi.Type) -> Any:
    if content_type == "application/json-patch+json":
        return json_patch(current, patch)
    if content_type == "application/merge-patch+json":
        return json_merge_patch(current, patch)
    if not isinstance(patch, dict):
        raise _bad_request("a strategic merge patch must be a JSON object")
    return strategic_merge_patch(current, patch, schema)


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        code, payload, ctype = self.server.cluster.handle(
            self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), body, headers
        )
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    cluster: Cluster
    verbose: bool = False


class KubeAPIServer:
    """The test server in this process: an HTTP thread plus the controller thread.

    >>> with KubeAPIServer() as api:
    ...     api.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, settings: Settings | None = None, verbose: bool = False):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the Kubernetes API test server listens on loopback only, not {host!r}")
        self.cluster = Cluster(settings)
        self._http = _HTTPServer((host, port), _Handler)
        self._http.cluster = self.cluster
        self._http.verbose = verbose
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KubeAPIServer:
        self._threads = [
            threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="kube-api-http"
            ),
            threading.Thread(target=self._controllers, daemon=True, name="kube-api-controllers"),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _controllers(self) -> None:
        while not self._stop.wait(self.cluster.settings.tick):
            self.cluster.reconcile()

    def stop(self) -> None:
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kubeconfig(url: str, *, token: str | None = None, context: str = "kube-test", namespace: str = "default") -> JSON:
    """A kubeconfig (as a dict) whose current context points at ``url``."""
    user: JSON = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
    }


def write_kubeconfig(path: Path | str, url: str, **kwargs: Any) -> Path:
    """Write :func:`kubeconfig` as JSON (valid YAML) to ``path``; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(kubeconfig(url, **kwargs), indent=2) + "\n", encoding="utf-8")
    return path


@dataclass
class KubeAPI:
    """What the ``kube_api`` fixture yields: a running test server and a kubeconfig for it.

    ``kubeconfig`` is a file whose current context (``context``) points at ``url`` with ``token``.
    :meth:`faults` changes the server's fault knobs for a ``with`` block.
    """

    url: str
    kubeconfig: Path
    token: str | None = None
    context: str = "kube-test"
    pid: int | None = None

    def _settings(self, changes: JSON | None = None) -> JSON:
        import urllib.request

        request = urllib.request.Request(
            self.url + "/_test/config",
            data=json.dumps(changes).encode() if changes is not None else None,
            method="PUT" if changes is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as resp:
            result: JSON = json.loads(resp.read())
        return result

    @contextlib.contextmanager
    def faults(self, **changes: Any) -> Iterator[JSON]:
        """Set knobs (``unready_images=["*:broken"]``...) for the block, then restore them."""
        before = self._settings()
        restore = {k: before[k] for k in changes}
        try:
            yield self._settings(changes)
        finally:
            self._settings(restore)

    def client(self) -> Any:
        """An official-client ``ApiClient`` for this server (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), persist_config=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kube_apiserver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None, help="require this bearer token (default: $KUBE_TEST_TOKEN)")
    parser.add_argument("--pod-ready-delay", type=float, default=None)
    parser.add_argument("--unpullable-image", action="append", default=[], help="fnmatch pattern (repeatable)")
    parser.add_argument("--unready-image", action="append", default=[], help="fnmatch pattern (repeatable)")
    parser.add_argument("--kubeconfig", default=None, help="write a kubeconfig pointing here to this path")
    parser.add_argument("--context", default="kube-test")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.token:
        settings.token = args.token
    if args.pod_ready_delay is not None:
        settings.pod_ready_delay = args.pod_ready_delay
    settings.unpullable_images += tuple(args.unpullable_image)
    settings.unready_images += tuple(args.unready_image)
    server = KubeAPIServer(args.host, args.port, settings, verbose=args.verbose)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, server.url, token=settings.token, context=args.context)
    print(f"kube-apiserver (test) listening on {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
