"""The model server app in-process (ASGI transport): predict, validation, backpressure, probes, metrics."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.ensemble import RandomForestClassifier

from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.serving import Predictor, create_app

N = 4
NAMES = [f"f{i}" for i in range(N)]
SIG = {"inputs": [{"name": n, "type": "double"} for n in NAMES], "outputs": [{"name": "y", "type": "double"}]}


def artifact(name: str = "demo", version: str = "7") -> ModelArtifact:
    return ModelArtifact(name=name, version=version, alias="champion", path="model.skops", sha256="ab" * 32,
                         signature=SIG)


class Linear:
    """Deterministic: each row's prediction identifies the row."""

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 0] * 1000 + rows[:, 1]


class Gated(Linear):
    """Holds every predict until ``gate`` opens; ``entered`` counts calls that started."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.entered.release()
        assert self.gate.wait(30)
        return super().predict(rows)


class Broken(Linear):
    def predict(self, rows: np.ndarray) -> np.ndarray:
        raise ValueError("model exploded")


def record(a: float = 1.0, b: float = 2.0) -> dict[str, float]:
    return {"f0": a, "f1": b, "f2": 0.5, "f3": -0.5}


Client = Callable[..., Awaitable[httpx.Response]]


def serve(estimator: Any, test: Callable[[httpx.AsyncClient, Any], Awaitable[None]], *, lifespan: bool = True,
          **settings: Any) -> None:
    """Run ``test(client, app)`` against a fresh app (started, unless ``lifespan=False``)."""
    app = create_app(Predictor(artifact(), estimator), **settings)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            if lifespan:
                async with app.router.lifespan_context(app):
                    await test(client, app)
            else:
                await test(client, app)

    asyncio.run(main())


def detail(resp: httpx.Response) -> list[tuple[list[Any], str]]:
    return [(e["loc"], e["type"]) for e in resp.json()["detail"]]


def test_predict_answers_each_record_with_model_and_version() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/v1/predict", json={"records": [record(1, 2), record(3, 4)]})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"predictions": [1002.0, 3004.0], "model": "demo", "version": "7"}
        r = await client.post("/v1/predict", json=[record(5, 6)])  # a bare list of records
        assert r.json()["predictions"] == [5006.0]

    serve(Linear(), test)


def test_a_real_forest_behind_the_app() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, N))
    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, (X[:, 0] > 0).astype(int))

    async def test(client: httpx.AsyncClient, app: Any) -> None:
        rows = rng.normal(size=(25, N))
        records = [dict(zip(NAMES, map(float, row), strict=True)) for row in rows]
        r = await client.post("/v1/predict", json={"records": records})
        assert r.json()["predictions"] == est.predict(rows).tolist()

    serve(est, test)


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_number_past_float32_is_422_for_a_forest_and_accepted_by_a_linear_model(fast_path: bool) -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, N))
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    huge = {**record(), "f1": 1e39, "f3": -4e38}

    async def refused(client: httpx.AsyncClient, app: Any) -> None:
        for body in ({"records": [huge]}, {"records": [record(), {**record(), "f1": 1e39, "f3": -4e38}]}):
            r = await client.post("/v1/predict", json=body)
            assert r.status_code == 422, r.text
            loc = [e["loc"][-1] for e in r.json()["detail"] if e["type"] == "less_than_equal"]
            assert loc == ["f1", "f3"] and "float32" in r.text
        ok = await client.post("/v1/predict", json={"records": [{**record(), "f1": 3.0e38}]})
        assert ok.status_code == 200  # the largest float32 range still predicts

    app = create_app(Predictor(artifact(), forest, fast_path=fast_path))

    async def main(test: Any, app: Any) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
            async with app.router.lifespan_context(app):
                await test(client, app)

    asyncio.run(main(refused, app))
    linear = LinearRegression().fit(X, X[:, 0])

    async def accepted(client: httpx.AsyncClient, app: Any) -> None:
        assert (await client.post("/v1/predict", json={"records": [huge]})).status_code == 200

    asyncio.run(main(accepted, create_app(Predictor(artifact(), linear, fast_path=fast_path))))


BAD_BODIES: list[tuple[Any, list[tuple[list[Any], str]]]] = [
    ({"records": [{"f0": 1.0, "f1": 2.0, "f2": 3.0}]}, [(["records", 0, "f3"], "missing")]),
    ({"records": [{**record(), "f2": "x"}]}, [(["records", 0, "f2"], "float_type")]),
    ({"records": [{**record(), "f2": None}]}, [(["records", 0, "f2"], "float_type")]),
    ({"records": [{**record(), "f2": True}]}, [(["records", 0, "f2"], "float_type")]),
    ({"records": [{**record(), "extra": 1}]}, [(["records", 0, "extra"], "extra_forbidden")]),
    ({"records": []}, [(["records"], "too_short")]),
    ({"records": [record(), [1, 2, 3, 4]]}, [(["records", 1], "model_type")]),
    ({"records": [record(), "row"]}, [(["records", 1], "model_type")]),
    ({"records": {"f0": 1}}, [(["records"], "list_type")]),
    ({"records": None}, [(["records"], "list_type")]),
    ({"rows": [record()]}, [(["rows"], "extra_forbidden")]),
    ({}, [(["records"], "missing")]),
    ([], [(["records"], "too_short")]),
    ("just a string", [(["body"], "model_type")]),
    (42, [(["body"], "model_type")]),
    (None, [(["body"], "model_type")]),
]


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES)
def test_bad_records_are_422_with_field_level_errors(body: Any, expected: list[Any]) -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/v1/predict", content=json.dumps(body))
        assert r.status_code == 422, r.text
        assert detail(r) == expected
        assert all(isinstance(e["msg"], str) and e["msg"] for e in r.json()["detail"])

    serve(Linear(), test)


def test_the_fourth_record_with_a_bad_f3_is_named_precisely() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        records = [record() for _ in range(5)]
        records[3]["f3"] = "seven"
        r = await client.post("/v1/predict", json={"records": records})
        assert r.status_code == 422
        assert r.json() == {"detail": [{"loc": ["records", 3, "f3"], "msg": "expected a number, got a string",
                                        "type": "float_type"}]}

    serve(Linear(), test)


@pytest.mark.parametrize("raw", [b'{"records": [{"f0": NaN, "f1": 1, "f2": 1, "f3": 1}]}',
                                 b'{"records": [{"f0": Infinity, "f1": 1, "f2": 1, "f3": 1}]}',
                                 b'{"records": [{"f0": -Infinity, "f1": 1, "f2": 1, "f3": 1}]}',
                                 b'{"records": [{"f0": 1e999, "f1": 1, "f2": 1, "f3": 1}]}'])
def test_nan_and_infinities_are_422(raw: bytes) -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/v1/predict", content=raw)
        assert r.status_code == 422 and detail(r) == [(["records", 0, "f0"], "finite_number")]

    serve(Linear(), test)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"records": [}', b"\xff\xfe\x00garbage", b"[" * 100_000,
                                 b'{"records": [1, 2]} trailing'])
def test_invalid_json_is_400_never_500(raw: bytes) -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/v1/predict", content=raw)
        assert r.status_code == 400, r.text
        assert detail(r) == [(["body"], "json_invalid")]

    serve(Linear(), test)


def test_a_10_mb_body_is_413() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        big = json.dumps({"records": [record()] * 220_000}).encode()
        assert len(big) > 10_000_000
        r = await client.post("/v1/predict", content=big)
        assert r.status_code == 413 and detail(r) == [(["body"], "too_large")]
        r = await client.post("/v1/predict", content=b"x" * 10_000_000)  # not even JSON
        assert r.status_code == 413
        r = await client.post("/v1/predict", json={"records": [record()]})  # still serving
        assert r.status_code == 200

    serve(Linear(), test)


def test_a_large_chunked_body_without_length_is_413() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(200):
                yield b" " * 65536

        r = await client.post("/v1/predict", content=chunks())
        assert r.status_code == 413

    serve(Linear(), test, max_body_bytes=1_000_000)


def test_more_records_than_the_queue_holds_is_413_and_a_big_valid_body_is_served() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/v1/predict", json={"records": [record()] * 101})
        assert r.status_code == 413 and detail(r) == [(["records"], "too_long")]
        rows = [record(i, 1) for i in range(100)]  # > 64 KiB: parsed off the event loop
        r = await client.post("/v1/predict", content=json.dumps({"records": rows}).encode() + b" " * 70_000)
        assert r.status_code == 200 and r.json()["predictions"] == [i * 1000.0 + 1 for i in range(100)]

    serve(Linear(), test, queue_size=100, max_batch=8)


def test_a_full_queue_answers_429_with_retry_after() -> None:
    est = Gated()

    async def test(client: httpx.AsyncClient, app: Any) -> None:
        first = asyncio.ensure_future(client.post("/v1/predict", json=[record(1, 1)]))
        assert await asyncio.to_thread(est.entered.acquire, True, 30)
        queued = [asyncio.ensure_future(client.post("/v1/predict", json=[record(2, i)])) for i in range(2)]
        batcher = app.state.batcher
        for _ in range(3000):
            if batcher.depth == 2:
                break
            await asyncio.sleep(0.001)
        r = await client.post("/v1/predict", json=[record(3, 3)])
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert "overloaded" in r.json()["detail"]
        est.gate.set()
        assert (await first).json()["predictions"] == [1001.0]
        assert [(await q).json()["predictions"] for q in queued] == [[2000.0], [2001.0]]
        r = await client.post("/v1/predict", json=[record(4, 4)])
        assert r.status_code == 200

    serve(est, test, queue_size=2)


def test_many_concurrent_clients_each_get_their_own_predictions() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        rng = random.Random(3)

        async def one(i: int) -> tuple[list[float], list[float]]:
            n = rng.randint(1, 4)
            rows = [record(i, j) for j in range(n)]
            await asyncio.sleep(rng.random() / 200)
            r = await client.post("/v1/predict", json={"records": rows})
            assert r.status_code == 200, r.text
            return r.json()["predictions"], [i * 1000.0 + j for j in range(n)]

        results = await asyncio.gather(*(one(i) for i in range(300)))
        for got, expected in results:
            assert got == expected
        text = (await client.get("/metrics")).text
        batches = _sample(text, "mlctl_batch_size_rows_count")
        assert 0 < batches < 300  # requests were batched together

    serve(Linear(), test, max_batch=32)


def test_a_model_failing_on_valid_input_is_a_json_500() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/v1/predict", json=[record()])
        assert r.status_code == 500
        assert r.json() == {"detail": "prediction failed: ValueError: model exploded"}
        assert _sample((await client.get("/metrics")).text, "mlctl_predict_errors_total",
                       reason="predict_failed") == 1

    serve(Broken(), test)


def test_other_methods_on_predict_are_405() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.get("/v1/predict")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert r.json() == {"detail": "Method Not Allowed"}

    serve(Linear(), test)


def test_health_ready_and_metadata() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        assert (await client.get("/health")).json() == {"status": "ok"}
        r = await client.get("/ready")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        meta = (await client.get("/metadata")).json()
        assert meta == {"name": "demo", "version": "7", "alias": "champion", "signature": SIG,
                        "sha256": "ab" * 32, "flavor": "sklearn", "run_id": None}

    serve(Linear(), test)


def test_not_ready_before_startup_and_after_shutdown() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        assert (await client.get("/health")).status_code == 200
        r = await client.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        r = await client.post("/v1/predict", json=[record()])
        assert r.status_code == 503
        async with app.router.lifespan_context(app):
            assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/ready")).status_code == 503

    serve(Linear(), test, lifespan=False)


def test_the_openapi_document_describes_the_predict_body() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        doc = (await client.get("/openapi.json")).json()
        body = doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        record_schema = body["oneOf"][1]["items"]
        assert record_schema["required"] == NAMES and record_schema["properties"]["f0"] == {"type": "number"}
        responses = doc["paths"]["/v1/predict"]["post"]["responses"]
        assert {"200", "400", "413", "422", "429", "503"} <= set(responses)
        assert {"/health", "/ready", "/metadata", "/metrics"} <= set(doc["paths"])

    serve(Linear(), test)


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_metrics_count_requests_by_status_with_model_and_version_labels() -> None:
    async def test(client: httpx.AsyncClient, app: Any) -> None:
        await client.post("/v1/predict", json=[record(), record()])
        await client.post("/v1/predict", json=[{"f0": "x"}])
        await client.post("/v1/predict", content=b"{")
        await client.get("/nope")
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        base = {"model": "demo", "version": "7"}
        assert _sample(text, "mlctl_http_requests_total", endpoint="/v1/predict", status="200", **base) == 1
        assert _sample(text, "mlctl_http_requests_total", endpoint="/v1/predict", status="422", **base) == 1
        assert _sample(text, "mlctl_http_requests_total", endpoint="/v1/predict", status="400", **base) == 1
        assert _sample(text, "mlctl_http_requests_total", endpoint="other", status="404", **base) == 1
        assert _sample(text, "mlctl_http_request_duration_seconds_count", endpoint="/v1/predict", **base) == 3
        assert _sample(text, "mlctl_predict_errors_total", reason="invalid_input", **base) == 1
        assert _sample(text, "mlctl_predict_errors_total", reason="invalid_json", **base) == 1
        assert _sample(text, "mlctl_batch_size_rows_sum", **base) == 2
        assert _sample(text, "mlctl_predict_rows_total", **base) == 2
        assert _sample(text, "mlctl_queue_depth_rows", **base) == 0
        assert _sample(text, "mlctl_model_info", alias="champion", sha256="ab" * 32, **base) == 1

    serve(Linear(), test)


def test_two_apps_in_one_process_keep_their_own_metrics() -> None:
    a = create_app(Predictor(artifact("a", "1"), Linear()))
    b = create_app(Predictor(artifact("b", "2"), Linear()))

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://a") as ca, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url="http://b") as cb, \
                a.router.lifespan_context(a), b.router.lifespan_context(b):
            await ca.post("/v1/predict", json=[record()])
            text_a, text_b = (await ca.get("/metrics")).text, (await cb.get("/metrics")).text
        assert _sample(text_a, "mlctl_predict_rows_total", model="a", version="1") == 1
        assert _sample(text_b, "mlctl_predict_rows_total", model="b", version="2") == 0
        assert 'model="a"' not in text_b

    asyncio.run(main())


def test_the_package_exports_its_public_api_lazily() -> None:
    import mlctl.serving as serving

    assert sorted(serving.__all__) == sorted(serving._EXPORTS)
    for name in serving.__all__:
        assert getattr(serving, name) is not None
    with pytest.raises(AttributeError):
        serving.nothing_here  # noqa: B018

