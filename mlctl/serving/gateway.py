"""The model gateway: many registered models behind one endpoint, split between versions by
A/B experiments.

Each loaded model version is a :class:`~mlctl.serving.app.ModelApp` of its own (its own
micro-batcher and metrics); the gateway routes in front of them, in plain ASGI:

===========================================  ===============================================
``GET /v1/models``                           the models served: versions loaded, aliases,
                                             default version, running experiment
``POST /v1/models/{name}/predict``           the model's running experiment picks the
                                             variant (else the default version)
``POST /v1/models/{name}/versions/{v}/predict``  that version, no experiment
``POST /v1/feedback``                        ``{"request_id", "reward"}`` or ``{"request_id",
                                             "label"}``: the outcome of an earlier request
``GET /health``, ``/ready``, ``/metrics``    probes; every model's metrics and the gateway's
===========================================  ===============================================

A predict body is the model server's (``{"records": [...]}`` or a bare list); for a sticky
experiment the key is a top-level field of the body named by the experiment's ``sticky_key``
(``{"records": [...], "user_id": "u-42"}``) or a query parameter of that name. Every answer
carries ``X-Request-Id`` (the client's, when it sent a sane one) and, under an experiment,
``X-Mlctl-Variant`` and ``X-Mlctl-Experiment``; the JSON body adds ``variant`` and
``request_id``.

Counting never waits on the store: assignments go into a :class:`Tally` flushed every
``flush_interval_s`` by a background task, which also re-reads the experiments (a paused or
stopped one sends everything to its control; a bandit's arms get the latest outcomes). Feedback
for a request id the store does not know yet is retried once after two flush intervals (at most
2 s): the request may have been answered by another replica that has not flushed yet. When the
store is unreachable, the gateway keeps serving with the last experiments it read, keeps
counting in memory (``mlctl_gateway_state_up`` is 0) and adds everything once the store is back.
A shadow copy runs after the answer is sent, on the shadow version's own batcher; it never
changes the answer or delays it, and whether it agreed is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric

from mlctl.core.errors import MlctlError, NotFound, ServiceUnavailable, UsageError
from mlctl.serving.app import (
    OFFLOAD_BYTES,
    ModelApp,
    Receive,
    Scope,
    Send,
    _Disconnected,
    _json_bytes,
    _predict_openapi,
    _receive_body,
    _records_of,
    _Reject,
    _respond,
    run_lifespan,
)
from mlctl.serving.batching import NotRunning, QueueFull, TooManyRows
from mlctl.serving.experiments.definition import Experiment
from mlctl.serving.experiments.store import ExperimentStore, Tally
from mlctl.serving.experiments.strategies import Arm, Strategy
from mlctl.serving.metrics import LATENCY_BUCKETS
from mlctl.serving.schema import RecordsInvalid, error

log = logging.getLogger("mlctl.serving")

_PREDICT = re.compile(r"^/v1/models/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/predict$")
_PINNED = re.compile(r"^/v1/models/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/versions/([A-Za-z0-9._-]{1,64})/predict$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class ServedModel:
    """One model behind the gateway: its loaded versions, its aliases and the default version."""

    name: str
    versions: dict[str, ModelApp]
    aliases: dict[str, str] = field(default_factory=dict)
    default: str = ""
    default_alias: str | None = None  #: the alias the default version follows (``champion``), if any
    memory: dict[str, int] = field(default_factory=dict)  #: version -> bytes the process grew loading it

    def version_of(self, variant: str) -> str | None:
        """The loaded version a variant (an alias or a version) names, if loaded."""
        version = self.aliases.get(variant, variant)
        return version if version in self.versions else None


@dataclass
class _Live:
    """A running experiment as the gateway routes it: its strategy, arms and variant -> version."""

    experiment: Experiment
    strategy: Strategy
    arms: list[Arm]
    versions: dict[str, str]
    shadow_version: str | None


class _GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mlctl_gateway_requests_total", "Gateway predict requests",
                                ("model", "version", "variant", "status"), registry=r)
        self.latency = Histogram("mlctl_gateway_request_duration_seconds", "Gateway predict latency",
                                 ("model", "variant"), buckets=LATENCY_BUCKETS, registry=r)
        self.assignments = Counter("mlctl_gateway_assignments_total", "Requests assigned by an experiment",
                                   ("model", "experiment", "variant"), registry=r)
        self.fallbacks = Counter("mlctl_gateway_sticky_fallbacks_total",
                                 "Sticky requests without their key, assigned at random", ("experiment",),
                                 registry=r)
        self.shadow = Counter("mlctl_gateway_shadow_requests_total", "Shadow copies by outcome",
                              ("model", "experiment", "target", "outcome"), registry=r)
        self.feedback = Counter("mlctl_gateway_feedback_total", "Feedback requests by status", ("status",),
                                registry=r)
        self.state_up = Gauge("mlctl_gateway_state_up", "1 when the last write to the experiment store worked",
                              registry=r)
        self.state_errors = Counter("mlctl_gateway_state_errors_total", "Failed writes or reads of the store",
                                    registry=r)
        self.alias_moves = Counter("mlctl_gateway_alias_moves_total", "Aliases that moved, by outcome "
                                   "(swapped, refused: signature differs, failed: could not load)",
                                   ("model", "alias", "outcome"), registry=r)
        self.state_up.set(1)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """A metric's child for these labels, looked up once (a label lookup costs microseconds)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, model: str, version: str, variant: str, status: int, seconds: float) -> None:
        self._child(self.requests, model, version, variant, str(status)).inc()
        self._child(self.latency, model, variant).observe(seconds)

    def assigned(self, model: str, experiment: str, variant: str, fallback: bool) -> None:
        self._child(self.assignments, model, experiment, variant).inc()
        if fallback:
            self._child(self.fallbacks, experiment).inc()


def _merged(registries: list[CollectorRegistry]) -> bytes:
    """One exposition of several registries, each metric family once (samples of every app)."""
    families: dict[str, Metric] = {}
    for registry in registries:
        for metric in registry.collect():
            have = families.get(metric.name)
            if have is None:
                families[metric.name] = have = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            have.samples.extend(metric.samples)
    merged = CollectorRegistry(auto_describe=False)

    class _Fixed:
        def collect(self) -> list[Metric]:
            return list(families.values())

    merged.register(_Fixed())
    return generate_latest(merged)


class Gateway:
    """The gateway's ASGI app (see the module docstring)."""

    def __init__(self, models: Mapping[str, ServedModel], *, store: ExperimentStore | None = None,
                 flush_interval_s: float = 1.0, max_body_bytes: int = 1_000_000, seed: int | None = None,
                 clock: Callable[[], float] = time.time,
                 aliases_of: Callable[[str], dict[str, str] | None] | None = None,
                 load_version: Callable[[str, str], ModelApp] | None = None, alias_check_s: float = 5.0) -> None:
        self.models = dict(models)
        self.aliases_of = aliases_of
        self.load_version = load_version
        self.alias_check_s = alias_check_s
        self._aliases_checked = 0.0
        self._stack: AsyncExitStack | None = None
        self._passed_over: set[tuple[str, str, str]] = set()  # (model, alias, version) refused or failed
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.max_body_bytes = max_body_bytes
        self.metrics = _GatewayMetrics()
        self._rng = random.Random(seed)
        self._clock = clock
        self._tally = Tally()
        self._unflushed: list[Tally] = []  # batches taken but not yet in the store, oldest first
        self._live: dict[str, _Live] = {}  # model -> its running experiment
        self._flusher: asyncio.Task[None] | None = None
        self._store_lock = asyncio.Lock()
        self._shadows: set[asyncio.Task[None]] = set()
        self.warnings: list[str] = []
        self.store_up = True
        for name, served in self.models.items():  # alias moves counted from 0, so increase() sees the first
            for alias in served.aliases:
                for outcome in ("swapped", "refused", "failed"):
                    self.metrics.alias_moves.labels(name, alias, outcome)

    # -- experiments --------------------------------------------------------------------------------

    def _read_experiments(self) -> dict[str, _Live]:
        """The running experiments on served models, with their arms (runs in a thread)."""
        live: dict[str, _Live] = {}
        if self.store is None:
            return live
        warnings = []
        for exp in self.store.experiments():
            served = self.models.get(exp.model)
            if served is None or exp.status != "running":
                continue
            versions = {v: served.version_of(v) for v in exp.variant_names}
            missing = [v for v, ver in versions.items() if ver is None]
            shadow = served.version_of(exp.shadow.target) if exp.shadow else None
            if missing:
                warnings.append(f"experiment {exp.name}: {', '.join(missing)} not loaded; "
                                f"{exp.model} serves its default version")
                continue
            if exp.model in live and live[exp.model].experiment.created_at >= exp.created_at:
                continue  # the newest running experiment of a model routes it
            live[exp.model] = _Live(exp, exp.make_strategy(), self.store.arms(exp.name),
                                    {v: ver for v, ver in versions.items() if ver is not None}, shadow)
        self.warnings = warnings
        return live

    async def refresh(self) -> None:
        """Add the tally to the store and re-read the experiments; on a store error keep both."""
        if self.store is None:
            return
        async with self._store_lock:
            if self._tally:
                self._unflushed.append(self._tally.take())
            try:
                while self._unflushed:  # oldest first; a batch that failed keeps its id, so it is added once
                    await asyncio.to_thread(self.store.flush, self._unflushed[0])
                    self._unflushed.pop(0)
                self._live = await asyncio.to_thread(self._read_experiments)
            except MlctlError as exc:
                if self.store_up:  # log once per outage
                    log.warning("experiment store unavailable, counting locally: %s", exc)
                self.store_up = False
                self.metrics.state_up.set(0)
                self.metrics.state_errors.inc()
                return
            if not self.store_up:
                log.warning("experiment store back; local counts added")
            self.store_up = True
            self.metrics.state_up.set(1)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            if self.aliases_of is not None and self.load_version is not None \
                    and self._clock() - self._aliases_checked >= self.alias_check_s:
                self._aliases_checked = self._clock()
                try:
                    await self.follow_aliases()
                except Exception:  # noqa: BLE001 - the registry may be away; serving goes on
                    log.warning("could not check the registry's aliases", exc_info=True)
            await self.refresh()

    async def follow_aliases(self) -> list[str]:
        """Load the versions aliases moved to and swap them in (no request fails: the old version
        stays loaded); an alias moved to a version with another input signature is refused."""
        assert self.aliases_of is not None and self.load_version is not None
        changes = []
        for name, served in self.models.items():
            now = await asyncio.to_thread(self.aliases_of, name)
            if not now:
                continue
            for alias, old in list(served.aliases.items()):
                new = now.get(alias)
                if new is None or new == old or (name, alias, new) in self._passed_over:
                    continue
                if new not in served.versions:
                    try:
                        before = rss_bytes()
                        app = await asyncio.to_thread(self.load_version, name, new)
                        served.memory[new] = max(0, rss_bytes() - before)
                    except Exception as exc:  # noqa: BLE001 - tampered or missing artifact: keep serving the old
                        log.warning("%s@%s moved to version %s, which could not be loaded: %s", name, alias, new, exc)
                        self.metrics.alias_moves.labels(name, alias, "failed").inc()
                        self._passed_over.add((name, alias, new))  # not tried again until the alias moves on
                        continue
                    current = served.versions[old].predictor.signature.get("inputs")
                    if app.predictor.signature.get("inputs") != current:
                        log.warning("%s@%s moved to version %s, whose input signature differs: refused, "
                                    "version %s keeps serving", name, alias, new, old)
                        self.metrics.alias_moves.labels(name, alias, "refused").inc()
                        self._passed_over.add((name, alias, new))
                        continue
                    assert self._stack is not None
                    await self._stack.enter_async_context(app.lifespan())
                    served.versions[new] = app
                served.aliases[alias] = new
                if served.default_alias == alias:
                    served.default = new
                self.metrics.alias_moves.labels(name, alias, "swapped").inc()
                changes.append(f"{name}@{alias}: {old} -> {new}")
                log.warning("%s@%s now serves version %s (was %s)", name, alias, new, old)
        if changes:
            self._live = await asyncio.to_thread(self._read_experiments)
        return changes

    # -- lifespan -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> Any:
        """Every version's batcher and the flush task run inside this block; the tally is flushed at the end."""
        async with AsyncExitStack() as stack:
            self._stack = stack
            for served in self.models.values():
                for model_app in served.versions.values():
                    await stack.enter_async_context(model_app.lifespan())
            await self.refresh()
            self._flusher = asyncio.create_task(self._flush_loop())
            try:
                yield
            finally:
                self._flusher.cancel()
                for task in list(self._shadows):
                    task.cancel()
                await asyncio.gather(self._flusher, *self._shadows, return_exceptions=True)
                await self.refresh()

    @property
    def router(self) -> Any:
        return SimpleNamespace(lifespan_context=self.lifespan)

    # -- HTTP ---------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await run_lifespan(self.lifespan, receive, send)
            return
        if kind != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            m = _PREDICT.match(path)
            if m:
                await self._predict(scope, receive, send, m.group(1), None)
                return
            m = _PINNED.match(path)
            if m:
                await self._predict(scope, receive, send, m.group(1), m.group(2))
                return
            if path == "/v1/feedback":
                await self._feedback(scope, receive, send)
                return
            if method != "GET":
                raise _Reject(405, "Method Not Allowed", "method_not_allowed", {"Allow": "GET"})
            if path == "/v1/models":
                await _respond(send, 200, _json_bytes({"models": self.describe()}))
            elif path == "/openapi.json":
                await _respond(send, 200, _json_bytes(self.openapi()))
            elif path == "/health":
                await _respond(send, 200, b'{"status":"ok"}')
            elif path == "/ready":
                ready = all(a.batcher.running for s in self.models.values() for a in s.versions.values())
                await _respond(send, 200 if ready else 503,
                               _json_bytes({"status": "ready" if ready else "not ready",
                                            "models": sorted(self.models)}))
            elif path == "/metrics":
                registries = [self.metrics.registry] + [a.metrics.registry for s in self.models.values()
                                                        for a in s.versions.values()]
                await _respond(send, 200, _merged(registries), b"text/plain; version=0.0.4; charset=utf-8")
            else:
                raise _Reject(404, f"no route {path}; see GET /v1/models", "not_found")
        except _Disconnected:
            return
        except _Reject as exc:
            extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            await _respond(send, exc.status, _json_bytes({"detail": exc.detail}), headers=extra)

    def describe(self) -> list[dict[str, Any]]:
        """``GET /v1/models``."""
        out = []
        for name, served in sorted(self.models.items()):
            live = self._live.get(name)
            out.append({"name": name, "versions": sorted(served.versions, key=_version_key),
                        "aliases": dict(served.aliases), "default": served.default,
                        "experiment": None if live is None else live.experiment.name,
                        "memory_bytes": {v: served.memory.get(v) for v in sorted(served.versions, key=_version_key)},
                        "signature": served.versions[served.default].predictor.signature})
        return out

    def openapi(self) -> dict[str, Any]:
        """The gateway's OpenAPI document: each model's predict paths with its own input schema."""
        paths: dict[str, Any] = {}
        for name, served in sorted(self.models.items()):
            for version in sorted(served.versions, key=_version_key):
                op = _gateway_op(served.versions[version], f"{name} version {version}", f"{name}_v{version}")
                paths[f"/v1/models/{name}/versions/{version}/predict"] = op
            default = served.versions[served.default]
            paths[f"/v1/models/{name}/predict"] = _gateway_op(default, f"{name}, routed by its experiment",
                                                              f"{name}_routed")
        reason = {"content": {"application/json": {"schema": {"type": "object", "required": ["detail"]}}}}
        paths["/v1/feedback"] = {"post": {
            "summary": "The outcome of an earlier request", "operationId": "feedback",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["request_id"], "additionalProperties": False,
                "properties": {"request_id": {"type": "string", "minLength": 1, "maxLength": 128},
                               "reward": {"type": "number"}, "label": {}}}}}},
            "responses": {"200": {"description": "Counted", "content": {"application/json": {"schema": {
                "type": "object", "required": ["request_id", "experiment", "variant", "reward"]}}}},
                "400": {"description": "The body is not JSON", **reason},
                "404": {"description": "Unknown or expired request id", **reason},
                "413": {"description": "The body is over 64 KiB", **reason},
                "409": {"description": "The request already has an outcome", **reason},
                "422": {"description": "Malformed feedback", **reason},
                "503": {"description": "The experiment store is unreachable", **reason}}}}
        listing = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
        for path, summary in (("/v1/models", "The models served"), ("/health", "The process is up"),
                              ("/ready", "Every model is loaded")):
            paths[path] = {"get": {"summary": summary, "operationId": path.strip("/").replace("/", "_"),
                                   "responses": listing}}
        return {"openapi": "3.1.0", "info": {"title": "mlctl model gateway", "version": "1"}, "paths": paths}

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                if _REQUEST_ID.match(given):
                    return given
        return os.urandom(16).hex()

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str, pinned: str | None) -> None:
        started = time.perf_counter()
        if scope["method"] != "POST":
            raise _Reject(405, "Method Not Allowed", "method_not_allowed", {"Allow": "POST"})
        served = self.models.get(name)
        if served is None:
            raise _Reject(404, f"unknown model {name}; served: {', '.join(sorted(self.models)) or 'none'}",
                          "not_found")
        live = None if pinned is not None else self._live.get(name)
        if pinned is not None:
            version = served.version_of(pinned)
            if version is None:
                raise _Reject(404, f"version {pinned} of {name} is not loaded; loaded: "
                                   f"{', '.join(sorted(served.versions, key=_version_key))}", "not_found")
        else:
            version = served.default
        request_id = self._request_id(scope)
        body = await _receive_body(scope, receive, self.max_body_bytes)
        payload = _load_json(body) if len(body) <= OFFLOAD_BYTES else await asyncio.to_thread(_load_json, body)
        variant, fallback = None, False
        if live is not None:
            key = _sticky_key(payload, scope, live.experiment.sticky_key)
            variant = live.strategy.choose(live.arms, key=key, rng=self._rng)
            version = live.versions[variant]
            fallback = live.experiment.sticky_key is not None and key is None
            self.metrics.assigned(name, live.experiment.name, variant, fallback)
        model_app = served.versions[version]
        headers = [(b"x-request-id", request_id.encode())]
        if live is not None and variant is not None:
            headers += [(b"x-mlctl-variant", variant.encode()), (b"x-mlctl-experiment",
                                                                  live.experiment.name.encode())]
        status = 500
        try:
            rows = _rows(payload, model_app)
            predictions = await _submit(model_app, rows)
            answer = {"predictions": predictions, "model": name, "version": version, "request_id": request_id}
            if variant is not None:
                answer["variant"] = variant
            try:
                encoded = _json_bytes(answer)
            except (TypeError, ValueError) as exc:
                raise _Reject(500, f"the model's output is not JSON-able: {exc}", "predict_failed") from None
            status = 200
            await _respond(send, 200, encoded, headers=headers)
        except _Reject as exc:
            status = exc.status
            if exc.reason in _MODEL_REASONS:
                model_app.metrics.observe_error(exc.reason)
            extra = headers + [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            await _respond(send, exc.status, _json_bytes({"detail": exc.detail}), headers=extra)
        except Exception as exc:  # the model failed on valid input
            log.exception("prediction failed")
            model_app.metrics.observe_error("predict_failed")
            await _respond(send, 500, _json_bytes({"detail": f"prediction failed: {type(exc).__name__}: {exc}"}),
                           headers=headers)
        finally:
            self.metrics.observe(name, version, variant or "-", status, time.perf_counter() - started)
        if live is None or variant is None:
            return
        exp = live.experiment
        if status == 200:
            # a label sent as feedback is compared with the answer to a one-record request
            prediction = str(predictions[0]) if len(predictions) == 1 else None
            self._tally.assign(exp.name, variant, request_id, expires_at=self._clock() + exp.feedback_window_s,
                               fallback=fallback, prediction=prediction)
            if exp.shadow is not None and live.shadow_version is not None \
                    and self._rng.random() * 100.0 < exp.shadow.share:
                task = asyncio.create_task(self._shadow(name, live, rows, predictions))
                self._shadows.add(task)
                task.add_done_callback(self._shadows.discard)
        elif status >= 500:
            self._tally.error(exp.name, variant)

    async def _shadow(self, name: str, live: _Live, rows: Any, predictions: list[Any]) -> None:
        """Send the same rows to the shadow version; count whether it agreed (never affects the answer)."""
        exp, shadow = live.experiment, live.experiment.shadow
        assert shadow is not None and live.shadow_version is not None
        outcome = "error"
        try:
            theirs = await _submit(self.models[name].versions[live.shadow_version], rows)
            outcome = "agree" if theirs == predictions else "disagree"
            self._tally.shadow(exp.name, shadow.target, agreed=outcome == "agree")
        except Exception:  # noqa: BLE001 - a failing shadow is counted, never raised
            self._tally.error(exp.name, shadow.target)
        self.metrics.shadow.labels(name, exp.name, shadow.target, outcome).inc()

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise _Reject(405, "Method Not Allowed", "method_not_allowed", {"Allow": "POST"})
        body = await _receive_body(scope, receive, 64 * 1024)
        payload = _load_json(body)
        if not isinstance(payload, dict) or not isinstance(payload.get("request_id"), str):
            self.metrics.feedback.labels("422").inc()
            raise _Reject(422, [error(["request_id"], "a string request_id is required", "missing")],
                          "invalid_input")
        extra = sorted(set(payload) - {"request_id", "reward", "label"})
        reward, label = payload.get("reward"), payload.get("label")
        if extra or (reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float))):
            self.metrics.feedback.labels("422").inc()
            raise _Reject(422, [error(extra or ["reward"], "extra field not permitted" if extra
                                      else "the reward must be a number", "invalid")], "invalid_input")
        if self.store is None:
            raise _Reject(503, "no experiment store: the gateway runs without experiments", "not_ready")
        await self.refresh()  # the request may still be in this gateway's tally
        store, rid = self.store, payload["request_id"]
        given = float(reward) if reward is not None else None
        text = None if label is None else str(label)

        def count() -> Any:
            return store.feedback(rid, reward=given, label=text)

        try:
            try:
                outcome = await asyncio.to_thread(count)
            except NotFound:  # ...or in another replica's, until its next flush
                await asyncio.sleep(min(2.0, 2 * self.flush_interval_s))
                outcome = await asyncio.to_thread(count)
        except NotFound as exc:
            status, detail = 404, exc.message
        except UsageError as exc:
            status, detail = (409 if "already has an outcome" in exc.message else 422), exc.message
        except ServiceUnavailable as exc:
            status, detail = 503, exc.message
        else:
            self.metrics.feedback.labels("200").inc()
            await _respond(send, 200, _json_bytes({"request_id": outcome.request_id, "experiment": outcome.experiment,
                                                   "variant": outcome.variant, "reward": outcome.reward}))
            return
        self.metrics.feedback.labels(str(status)).inc()
        await _respond(send, status, _json_bytes({"detail": detail}))


def _gateway_op(model_app: ModelApp, what: str, op_id: str) -> dict[str, Any]:
    """The model server's predict operation as the gateway serves it: request attributes (plain
    top-level fields) allowed beside ``records``, ``variant`` and ``request_id`` in the answer, 404."""
    op = _predict_openapi(model_app.predictor)["post"]
    op_id = re.sub(r"[^A-Za-z0-9_]", "_", f"predict_{op_id}")
    op = {**op, "summary": f"Predict with {what}", "operationId": op_id}
    body = op["requestBody"]["content"]["application/json"]["schema"]
    wrapped = dict(body["oneOf"][0])
    wrapped["additionalProperties"] = {"type": ["string", "number", "boolean", "null"]}
    op["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [wrapped, body["oneOf"][1]]}}}}
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    ok = {**ok, "properties": {**ok["properties"], "variant": {"type": "string"}, "request_id": {"type": "string"}}}
    op["responses"] = {**op["responses"], "200": {"description": "One prediction per record, in order",
                                                   "content": {"application/json": {"schema": ok}}},
                       "404": {**op["responses"]["503"], "description": "Unknown model or version"}}
    return {"post": op}


_MODEL_REASONS = frozenset({"invalid_json", "invalid_input", "too_large", "overloaded", "not_ready"})


def rss_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Reject(400, [error(["body"], f"invalid JSON: {exc}", "json_invalid")], "invalid_json") from None
    except RecursionError:
        raise _Reject(400, [error(["body"], "invalid JSON: nested too deeply", "json_invalid")],
                      "invalid_json") from None


def _sticky_key(payload: Any, scope: Scope, field_name: str | None) -> str | None:
    """The sticky key: a top-level body field, else a query parameter of that name."""
    if field_name is None:
        return None
    if isinstance(payload, dict) and field_name in payload:
        value = payload[field_name]
        return None if value is None or isinstance(value, dict | list) else str(value)
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        from urllib.parse import parse_qs

        values = parse_qs(query).get(field_name)
        if values:
            return values[0]
    return None


def _rows(payload: Any, model_app: ModelApp) -> Any:
    """The checked input rows of a parsed body. Top-level fields besides ``records`` that hold a
    plain value (a string, number, boolean or null) are request attributes such as a sticky key,
    not record fields: they are set aside whether or not an experiment uses them."""
    if isinstance(payload, dict) and len(payload) > 1:
        payload = {k: v for k, v in payload.items() if k == "records" or not _is_plain(v)}
    try:
        return model_app.predictor.schema.to_array(_records_of(payload))
    except RecordsInvalid as exc:
        raise _Reject(422, exc.errors, "invalid_input") from None


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


async def _submit(model_app: ModelApp, rows: Any) -> list[Any]:
    if not model_app.batcher.running:
        raise _Reject(503, "the model is not ready", "not_ready")
    try:
        return await model_app.batcher.submit(rows, len(rows))
    except QueueFull as exc:
        raise _Reject(429, f"the gateway is overloaded: {exc}", "overloaded",
                      {"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))}) from None
    except TooManyRows as exc:
        raise _Reject(413, [error(["records"], str(exc), "too_long")], "too_large") from None
    except NotRunning as exc:
        raise _Reject(503, str(exc), "not_ready") from None
