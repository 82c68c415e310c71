"""The model server's ASGI app (FastAPI): predict, health, readiness, metadata and metrics.

``POST /v1/predict`` takes ``{"records": [{...}, ...]}`` (or a bare list of records), checks
every record against the model's signature, and answers ``{"predictions": [...], "model",
"version"}``. Bad input is always a 4xx with FastAPI's ``{"detail": [{"loc", "msg", "type"}]}``
shape, never a 500:

====  =======================================================================
code  when
====  =======================================================================
400   the body is not JSON (or not UTF-8)
405   a method other than POST
413   the body is over ``max_body_bytes``, or has more records than the queue
422   a record is missing a field, has a wrong type, an extra field, NaN/inf;
      an empty list; a record that is not an object
429   the queue is full (``Retry-After`` says when to retry): backpressure
503   the model is not ready (starting or stopping)
500   only when the model itself fails on valid input (JSON ``detail``)
====  =======================================================================

Concurrent requests are joined into micro-batches (:mod:`mlctl.serving.batching`); the model
runs in a worker thread, so the event loop keeps accepting requests meanwhile.

The app is plain ASGI in front (:class:`ModelApp`): the predict endpoint and ``GET`` on the probes,
``/metadata`` and ``/metrics`` never pass through a framework, and the server starts without
importing one. Everything else (``/docs``, ``/openapi.json``, other methods, unknown paths, with
FastAPI's answers) is served by a FastAPI app built the first time it is needed (importing
FastAPI takes about 0.3 s of a start that is otherwise mostly scikit-learn's import).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from mlctl.serving.batching import MicroBatcher, NotRunning, QueueFull, TooManyRows
from mlctl.serving.metrics import ServerMetrics
from mlctl.serving.predictor import Predictor
from mlctl.serving.schema import RecordsInvalid, error

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("mlctl.serving")

#: Bodies larger than this are parsed and checked in a worker thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Reject(Exception):
    """A request refused with ``status`` and a JSON body (counted under ``reason``)."""

    def __init__(self, status: int, detail: Any, reason: str, headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.reason = reason
        self.headers = headers


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


def _too_large(limit: int) -> _Reject:
    return _Reject(413, [error(["body"], f"request body is larger than {limit} bytes", "too_large")], "too_large")


async def _receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything (the server
    discards the rest of the body); a chunked body is counted as it arrives.
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise _Reject(400, [error(["headers", "content-length"], "not an integer", "int_parsing")],
                              "invalid_json") from None
            if declared > limit:
                raise _too_large(limit)
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _records_of(payload: Any) -> Any:
    """The list of records in a parsed body: ``{"records": [...]}`` or a bare list."""
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict):
        raise RecordsInvalid([error(["body"], 'expected {"records": [...]} or a list of records', "model_type")])
    extra = [k for k in payload if k != "records"]
    if extra:
        raise RecordsInvalid([error([k], "extra field not permitted", "extra_forbidden") for k in extra])
    if "records" not in payload:
        raise RecordsInvalid([error(["records"], "field required", "missing")])
    return payload["records"]


def _parse(body: bytes, predictor: Predictor) -> Any:
    """Parse and check a body; returns the 2-D input array (raises _Reject)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise _Reject(400, [error(["body"], f"invalid JSON: {exc}", "json_invalid")], "invalid_json") from None
    except RecursionError:
        raise _Reject(400, [error(["body"], "invalid JSON: nested too deeply", "json_invalid")],
                      "invalid_json") from None
    try:
        return predictor.schema.to_array(_records_of(payload))
    except RecordsInvalid as exc:
        raise _Reject(422, exc.errors, "invalid_input") from None


def _request_schema(predictor: Predictor) -> dict[str, Any]:
    """The OpenAPI schema of the predict body, from the signature."""
    kinds: dict[str, dict[str, Any]] = {
        "double": {"type": "number"}, "float": {"type": "number"}, "long": {"type": "integer"},
        "integer": {"type": "integer"}, "string": {"type": "string"}, "boolean": {"type": "boolean"}}
    bound = predictor.schema.max_abs
    if bound is not None:  # a model that computes in float32 refuses larger magnitudes (422)
        kinds = {k: ({**v, "minimum": -bound, "maximum": bound} if v["type"] in ("number", "integer") else v)
                 for k, v in kinds.items()}
    record = {"type": "object", "additionalProperties": False,
              "required": list(predictor.schema.names),
              "properties": {n: kinds[t] for n, t in zip(predictor.schema.names, predictor.schema.types,
                                                          strict=True)}}
    records = {"type": "array", "minItems": 1, "items": record}
    return {"oneOf": [{"type": "object", "additionalProperties": False, "required": ["records"],
                       "properties": {"records": records}}, records]}


def _predict_openapi(predictor: Predictor) -> dict[str, Any]:
    """The OpenAPI description of ``POST /v1/predict`` (served by :class:`_PredictEndpoint`)."""
    error_body = {"content": {"application/json": {"schema": {"type": "object", "properties": {
        "detail": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "properties": {
            "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"}, "type": {"type": "string"}}}}]}}}}}}

    def err(text: str) -> dict[str, Any]:
        return {"description": text, **error_body}

    return {"post": {
        "summary": "Predict for a list of records",
        "operationId": "predict_v1_predict_post",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _request_schema(predictor)}}},
        "responses": {
            "200": {"description": "One prediction per record, in order", "content": {"application/json": {
                "schema": {"type": "object", "required": ["predictions", "model", "version"], "properties": {
                    "predictions": {"type": "array", "items": {}}, "model": {"type": "string"},
                    "version": {"type": "string"}}}}}},
            "400": err("The body is not JSON"),
            "413": err("The body or the number of records is over the limit"),
            "422": err("Records do not match the model's signature (field-level errors)"),
            "429": err("The queue is full; retry after Retry-After seconds"),
            "503": err("The model is not ready"),
        }}}


class _PredictEndpoint:
    """``POST /v1/predict`` as a plain ASGI handler: the hot path skips routing and dependency solving."""

    def __init__(self, predictor: Predictor, batcher: MicroBatcher[Any, Any], metrics: ServerMetrics,
                 max_body_bytes: int) -> None:
        self.predictor = predictor
        self.batcher = batcher
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._tail = _json_bytes({"model": predictor.name, "version": predictor.version})[1:]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one request; returns the status code sent (0 when the client went away)."""
        headers: dict[str, str] | None = None
        try:
            status, body = 200, await self._predict(scope, receive)
        except _Disconnected:
            return 0
        except _Reject as exc:
            self.metrics.observe_error(exc.reason)
            status, body, headers = exc.status, _json_bytes({"detail": exc.detail}), exc.headers
        except Exception as exc:  # the model failed on valid input: a server error, reported as JSON
            log.exception("prediction failed")
            self.metrics.observe_error("predict_failed")
            status, body = 500, _json_bytes({"detail": f"prediction failed: {type(exc).__name__}: {exc}"})
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()] if headers else None
        await _respond(send, status, body, headers=extra)
        return status

    async def _predict(self, scope: Scope, receive: Receive) -> bytes:
        if scope["method"] != "POST":
            raise _Reject(405, "Method Not Allowed", "method_not_allowed", {"Allow": "POST"})
        if not self.batcher.running:
            raise _Reject(503, "the model is not ready", "not_ready")
        body = await _receive_body(scope, receive, self.max_body_bytes)
        if len(body) > OFFLOAD_BYTES:
            rows = await asyncio.to_thread(_parse, body, self.predictor)
        else:
            rows = _parse(body, self.predictor)
        try:
            predictions = await self.batcher.submit(rows, len(rows))
        except QueueFull as exc:
            raise _Reject(429, f"the server is overloaded: {exc}", "overloaded",
                          {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}) from None
        except TooManyRows as exc:
            raise _Reject(413, [error(["records"], str(exc), "too_long")], "too_large") from None
        except NotRunning as exc:
            raise _Reject(503, str(exc), "not_ready") from None
        try:
            encoded = json.dumps(predictions, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RuntimeError(f"the model's output is not JSON-able: {exc}") from None
        return b'{"predictions":' + encoded.encode() + b"," + self._tail


class ModelApp:
    """The model server's ASGI app for one loaded model (made by :func:`create_app`).

    Serves ``POST /v1/predict`` and ``GET /health``, ``/ready``, ``/metadata``, ``/metrics`` itself,
    times and counts every request, and runs the micro-batcher for the server's lifespan
    (:meth:`lifespan`; also ``app.router.lifespan_context(app)``, as on a FastAPI app). Any other
    request goes to a FastAPI app made on first use (:meth:`framework`): ``/docs``,
    ``/openapi.json``, 404 and 405 answers with FastAPI's ``{"detail": ...}`` bodies.
    ``state`` holds ``predictor``, ``batcher`` and ``metrics``.
    """

    def __init__(self, predictor: Predictor, *, max_batch: int, max_wait_ms: float, queue_size: int,
                 max_body_bytes: int, workers: int) -> None:
        self.predictor = predictor
        self.metrics = metrics = ServerMetrics(predictor.name, predictor.version, alias=predictor.artifact.alias,
                                               sha256=predictor.artifact.sha256, flavor=predictor.artifact.flavor)
        self.batcher: MicroBatcher[Any, Any] = MicroBatcher(
            predictor.predict_chunks, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size,
            workers=workers, on_batch=metrics.observe_batch)
        metrics.track_queue(lambda: self.batcher.depth, lambda: self.batcher.in_flight)
        self.settings = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "queue_size": queue_size,
                         "workers": workers}
        self.state = SimpleNamespace(predictor=predictor, batcher=self.batcher, metrics=metrics)
        self.router = SimpleNamespace(lifespan_context=self.lifespan)
        self._predict = _PredictEndpoint(predictor, self.batcher, metrics, max_body_bytes)
        self._metadata_body = _json_bytes(predictor.metadata())
        self._gets: dict[str, Callable[[], tuple[int, bytes, bytes]]] = {
            "/health": lambda: (200, b'{"status":"ok"}', b"application/json"),
            "/ready": self._ready,
            "/metadata": lambda: (200, self._metadata_body, b"application/json"),
            "/metrics": lambda: (200, metrics.exposition(), metrics.content_type.encode()),
        }
        self._framework: ASGIApp | None = None
        self._framework_lock: asyncio.Lock | None = None

    def ready_document(self) -> tuple[int, dict[str, str]]:
        """``GET /ready``: 200 once the batcher runs, else 503."""
        ready = self.batcher.running
        return (200 if ready else 503), {"status": "ready" if ready else "not ready", "model": self.predictor.name,
                                         "version": self.predictor.version}

    def _ready(self) -> tuple[int, bytes, bytes]:
        status, doc = self.ready_document()
        return status, _json_bytes(doc), b"application/json"

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """The batcher runs inside this block."""
        await self.batcher.start()
        predictor = self.predictor
        log.info("model %s version %s ready (max_batch=%d, max_wait_ms=%g, queue_size=%d, workers=%d, predict=%s)",
                 predictor.name, predictor.version, self.settings["max_batch"], self.settings["max_wait_ms"],
                 self.settings["queue_size"], self.settings["workers"],
                 "tree fast path" if predictor.fast_path else type(predictor.estimator).__name__ + ".predict")
        try:
            yield
        finally:
            await self.batcher.stop()

    async def framework(self) -> ASGIApp:
        """The FastAPI app for every other request, made (FastAPI imported, in a worker thread) on first use."""
        if self._framework is None:
            if self._framework_lock is None:
                self._framework_lock = asyncio.Lock()
            async with self._framework_lock:
                if self._framework is None:
                    self._framework = await asyncio.to_thread(_framework_app, self)
        return self._framework

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if kind != "http":
            await (await self.framework())(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        if path == "/v1/predict":
            status = await self._predict(scope, receive, send)
            if status:
                self.metrics.observe_request(path, status, time.perf_counter() - started)
            return
        status = 500
        try:
            answer = self._gets.get(path) if scope["method"] == "GET" else None
            if answer is not None:
                status, body, content_type = answer()
                await _respond(send, status, body, content_type)
                return

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await (await self.framework())(scope, receive, send_status)
        finally:
            self.metrics.observe_request(self.metrics.endpoint(path), status, time.perf_counter() - started)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(self.lifespan, receive, send)


async def run_lifespan(lifespan: Callable[[], Any], receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol around an app's ``lifespan()`` context manager."""
    started = False
    await receive()  # lifespan.startup
    try:
        async with lifespan():
            await send({"type": "lifespan.startup.complete"})
            started = True
            await receive()  # lifespan.shutdown
    except BaseException:
        failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
        await send({"type": failed, "message": traceback.format_exc()})
        raise
    await send({"type": "lifespan.shutdown.complete"})


def _framework_app(model: ModelApp) -> FastAPI:
    """The FastAPI app behind :class:`ModelApp`: documentation, and FastAPI's answers to the rest."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    predictor = model.predictor
    app = FastAPI(title=f"mlctl model server: {predictor.name}", version=predictor.version,
                  docs_url="/docs", redoc_url=None, telemetry={"tracing": False, "metrics": False, "logs": False})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema["paths"] = {"/v1/predict": _predict_openapi(predictor), **schema["paths"]}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    def plain(path: str) -> Any:
        status, body, content_type = model._gets[path]()
        return Response(content=body, status_code=status, media_type=content_type.decode())

    # GET on these is answered by ModelApp itself; here they are described, and other methods get 405
    @app.get("/health", summary="The process is up", response_model=None)
    async def health() -> Any:
        return plain("/health")

    @app.get("/ready", summary="The model is loaded and the batcher running", response_model=None)
    async def ready() -> Any:
        return plain("/ready")

    @app.get("/metadata", summary="Name, version, alias, signature and sha256 of the model", response_model=None)
    async def metadata() -> Any:
        return plain("/metadata")

    @app.get("/metrics", summary="Prometheus metrics", response_model=None)
    async def prometheus_metrics() -> Any:
        return plain("/metrics")

    return app


def create_app(
    predictor: Predictor,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 2.0,
    queue_size: int = 1024,
    max_body_bytes: int = 1_000_000,
    workers: int = 1,
) -> ModelApp:
    """The model server app for one loaded model.

    ``max_batch``: most rows in one model call. ``max_wait_ms``: with ``workers > 1``, how long
    a partial batch waits for more rows while another batch runs (an idle model never waits).
    ``queue_size``: most rows waiting; beyond it requests get 429. ``max_body_bytes``: larger
    bodies get 413. ``workers``: model calls that may run at once (threads).

    ``POST /v1/predict`` and the probes are served by :class:`ModelApp` itself, in front of
    FastAPI (about a third of the per-request CPU is saved, and FastAPI is not imported before
    the first request that needs it); ``POST /v1/predict`` is still described in ``/openapi.json``.
    FastAPI's own OpenTelemetry instrumentation is off: the server exports Prometheus metrics.
    """
    return ModelApp(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size,
                    max_body_bytes=max_body_bytes, workers=workers)
