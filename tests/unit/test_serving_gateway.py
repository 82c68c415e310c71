"""The gateway in-process: routing by experiment, pinned versions, headers, feedback, shadow copies,
a store that goes away and comes back, merged metrics, bad input."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlctl.core.errors import ServiceUnavailable
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.serving import Predictor, create_app
from mlctl.serving.experiments.definition import new_experiment
from mlctl.serving.experiments.store import ExperimentStore, SqliteStore, Tally
from mlctl.serving.gateway import Gateway, ServedModel

SIG = {"inputs": [{"name": "x", "type": "double"}], "outputs": [{"name": "y", "type": "double"}]}


class Versioned:
    """Answers ``version * 100 + x``: the answer tells which version served it."""

    def __init__(self, version: int) -> None:
        self.version = version

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 0] + 100.0 * self.version


def model(name: str, versions: dict[str, int], aliases: dict[str, str], default: str) -> ServedModel:
    apps = {}
    for version, value in versions.items():
        art = ModelArtifact(name=name, version=version, alias=None, path="m.skops", sha256="cd" * 32, signature=SIG)
        apps[version] = create_app(Predictor(art, Versioned(value)))
    return ServedModel(name, apps, aliases, default)


class FlakyStore(SqliteStore):
    """An in-memory store that can be switched off like a Redis that went away."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.down = False

    def flush(self, tally: Tally) -> None:
        if self.down:
            raise ServiceUnavailable("Redis at redis://127.0.0.1:1/0 is unreachable")
        super().flush(tally)

    def experiments(self) -> list[Any]:
        if self.down:
            raise ServiceUnavailable("Redis at redis://127.0.0.1:1/0 is unreachable")
        return super().experiments()


Test = Callable[[httpx.AsyncClient, Gateway], Awaitable[None]]


def run(store: ExperimentStore | None, test: Test, *, seed: int = 0) -> None:
    models = {"churn": model("churn", {"1": 1, "2": 2, "3": 3}, {"champion": "1", "challenger": "2"}, "1"),
              "fraud": model("fraud", {"4": 4}, {}, "4")}
    gw = Gateway(models, store=store, flush_interval_s=3600, seed=seed)

    async def main() -> None:
        transport = httpx.ASGITransport(app=gw)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            async with gw.router.lifespan_context(gw):
                await test(client, gw)

    asyncio.run(main())


def body(x: float = 0.5, **attrs: Any) -> dict[str, Any]:
    return {"records": [{"x": x}], **attrs}


def test_without_experiments_the_default_serves_and_versions_can_be_pinned() -> None:
    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        models = (await c.get("/v1/models")).json()["models"]
        assert [(m["name"], m["versions"], m["default"], m["experiment"]) for m in models] == [
            ("churn", ["1", "2", "3"], "1", None), ("fraud", ["4"], "4", None)]
        r = await c.post("/v1/models/churn/predict", json=body())
        assert r.status_code == 200 and r.json()["predictions"] == [100.5] and "x-mlctl-variant" not in r.headers
        assert len(r.headers["x-request-id"]) == 32 and r.json()["request_id"] == r.headers["x-request-id"]
        r = await c.post("/v1/models/churn/versions/3/predict", json=body(), headers={"X-Request-Id": "mine-1"})
        assert r.json()["predictions"] == [300.5] and r.headers["x-request-id"] == "mine-1"
        r = await c.post("/v1/models/churn/versions/challenger/predict", json=body())
        assert r.json()["version"] == "2"  # an alias pins too
        assert (await c.post("/v1/models/fraud/predict", json=[{"x": 1.0}])).json()["predictions"] == [401.0]

    run(None, test)


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "words"),
    [
        ("POST", "/v1/models/nope/predict", body(), 404, "unknown model nope; served: churn, fraud"),
        ("POST", "/v1/models/churn/versions/9/predict", body(), 404, "version 9 of churn is not loaded"),
        ("GET", "/v1/models/churn/predict", None, 405, "Method Not Allowed"),
        ("POST", "/v1/models/churn/predict", {"records": [{"y": 1}]}, 422, "x"),
        ("POST", "/v1/models/churn/predict", {"records": [{"x": 1}], "extra": [1]}, 422, "extra"),
        ("GET", "/v2/anything", None, 404, "no route"),
        ("POST", "/v1/feedback", {"reward": 1}, 422, "request_id"),
    ],
)
def test_bad_requests_get_4xx_with_a_reason(method: str, path: str, payload: Any, status: int, words: str) -> None:
    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        r = await c.request(method, path, json=payload)
        assert r.status_code == status and words in str(r.json()["detail"])

    run(SqliteStore(":memory:"), test)


def test_invalid_json_is_400_and_an_oversized_body_413() -> None:
    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        assert (await c.post("/v1/models/churn/predict", content=b"{nope")).status_code == 400
        big = b'{"records": [' + b'{"x": 1.0},' * 200_000 + b'{"x": 1.0}]}'
        assert (await c.post("/v1/models/churn/predict", content=big)).status_code == 413

    run(None, test)


def test_an_experiment_splits_traffic_labels_answers_and_counts_them() -> None:
    store = SqliteStore(":memory:")
    store.create(new_experiment("ab", "churn", "champion:50,challenger:50"))

    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        seen: Counter[str] = Counter()
        for _ in range(400):
            r = await c.post("/v1/models/churn/predict", json=body(0.25))
            assert r.status_code == 200 and r.headers["x-mlctl-experiment"] == "ab"
            variant = r.headers["x-mlctl-variant"]
            assert r.json()["variant"] == variant
            assert r.json()["predictions"] == [{"champion": 100.25, "challenger": 200.25}[variant]]
            seen[variant] += 1
        assert 150 < seen["champion"] < 250 and seen["champion"] + seen["challenger"] == 400
        await gw.refresh()
        stats = store.stats("ab")
        assert {v: s.assigned for v, s in stats.items()} == dict(seen)
        assert (await c.get("/v1/models")).json()["models"][0]["experiment"] == "ab"

    run(store, test)


def test_sticky_users_keep_their_variant_and_a_paused_experiment_sends_all_to_the_control() -> None:
    store = SqliteStore(":memory:")
    store.create(new_experiment("ab", "churn", "champion:50,challenger:50", sticky_key="user_id"))

    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        first = {}
        for user in range(40):
            r = await c.post("/v1/models/churn/predict", json=body(user_id=f"u{user}"))
            first[user] = r.headers["x-mlctl-variant"]
        for user in range(40):
            r = await c.post(f"/v1/models/churn/predict?user_id=u{user}", json=body())  # the key as a parameter
            assert r.headers["x-mlctl-variant"] == first[user]
        assert set(first.values()) == {"champion", "challenger"}
        await c.post("/v1/models/churn/predict", json=body())  # no key: random, counted as a fallback
        await gw.refresh()
        assert sum(s.fallback for s in store.stats("ab").values()) == 1
        store.set_status("ab", "paused")
        await gw.refresh()
        r = await c.post("/v1/models/churn/predict", json=body(user_id="u1"))
        assert r.status_code == 200 and "x-mlctl-variant" not in r.headers and r.json()["version"] == "1"

    run(store, test)


def test_feedback_counts_once_by_reward_or_label() -> None:
    store = SqliteStore(":memory:")
    store.create(new_experiment("ab", "churn", "champion:50,challenger:50"))

    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        r = await c.post("/v1/models/churn/predict", json=body(0.0))
        rid, variant = r.headers["x-request-id"], r.headers["x-mlctl-variant"]
        fb = await c.post("/v1/feedback", json={"request_id": rid, "reward": 1})  # not yet flushed: flushed first
        assert fb.status_code == 200 and fb.json() == {"request_id": rid, "experiment": "ab", "variant": variant,
                                                       "reward": 1.0}
        again = await c.post("/v1/feedback", json={"request_id": rid, "reward": 1})
        assert again.status_code == 409 and "already has an outcome" in again.json()["detail"]
        assert (await c.post("/v1/feedback", json={"request_id": "zzz", "reward": 1})).status_code == 404
        assert (await c.post("/v1/feedback", json={"request_id": rid, "reward": "yes"})).status_code == 422
        assert (await c.post("/v1/feedback", json={"request_id": rid, "extra": 1})).status_code == 422
        r = await c.post("/v1/models/churn/predict", json=body(0.0))
        answer = str(r.json()["predictions"][0])
        fb = await c.post("/v1/feedback", json={"request_id": r.headers["x-request-id"], "label": answer})
        assert fb.json()["reward"] == 1.0
        assert sum(s.trials for s in store.stats("ab").values()) == 2

    run(store, test)


def test_a_shadow_copy_never_changes_the_answer_and_its_agreement_is_counted() -> None:
    store = SqliteStore(":memory:")
    store.create(new_experiment("ab", "churn", "champion:50,challenger:50", shadow="3:100"))

    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        for _ in range(20):
            r = await c.post("/v1/models/churn/predict", json=body())
            assert r.json()["version"] in ("1", "2")  # never the shadow's answer
        for _ in range(100):  # the copies run after the answers
            if not gw._shadows:  # noqa: SLF001
                break
            await asyncio.sleep(0.01)
        await gw.refresh()
        shadow = store.stats("ab")["3"]
        assert shadow.shadowed == 20 and shadow.shadow_agreed == 0  # version 3 answers differently
        metrics = (await c.get("/metrics")).text
        assert 'mlctl_gateway_shadow_requests_total{experiment="ab",model="churn",outcome="disagree",target="3"} 20.0' \
            in metrics

    run(store, test)


def test_the_store_going_away_loses_no_count_and_keeps_the_last_experiments() -> None:
    store = FlakyStore()
    store.create(new_experiment("ab", "churn", "champion:50,challenger:50"))

    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        store.down = True
        for _ in range(30):
            r = await c.post("/v1/models/churn/predict", json=body())
            assert r.status_code == 200 and r.headers["x-mlctl-experiment"] == "ab"  # last known experiment
        await gw.refresh()
        await gw.refresh()
        assert "mlctl_gateway_state_up 0.0" in (await c.get("/metrics")).text
        fb = await c.post("/v1/feedback", json={"request_id": "x", "reward": 1})
        assert fb.status_code in (404, 503)
        store.down = False
        await gw.refresh()
        assert sum(s.assigned for s in store.stats("ab").values()) == 30  # reconciled
        assert "mlctl_gateway_state_up 1.0" in (await c.get("/metrics")).text

    run(store, test)


def test_metrics_are_one_valid_exposition_for_every_version() -> None:
    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        await c.post("/v1/models/churn/predict", json=body())
        await c.post("/v1/models/fraud/predict", json=body())
        text = (await c.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}  # raises on a duplicate family
        assert text.count("# TYPE mlctl_predict_rows_total counter") == 1
        rows = {(s.labels["model"], s.labels["version"]): s.value for s in families["mlctl_predict_rows"].samples
                if s.name == "mlctl_predict_rows_total"}
        assert rows[("churn", "1")] == 1 and rows[("fraud", "4")] == 1 and rows[("churn", "2")] == 0
        assert "mlctl_gateway_requests" in families
        assert (await c.get("/ready")).json()["status"] == "ready"

    run(None, test)


def _app(name: str, version: str, value: int, sig: dict[str, Any] = SIG) -> Any:
    art = ModelArtifact(name=name, version=version, alias=None, path="m.skops", sha256="cd" * 32, signature=sig)
    return create_app(Predictor(art, Versioned(value)))


def test_an_alias_that_moves_is_followed_and_a_different_signature_refused() -> None:
    registry = {"champion": "1", "challenger": "2"}
    loaded: list[str] = []

    def load_version(name: str, version: str) -> Any:
        loaded.append(version)
        if version == "9":
            raise RuntimeError("artifact tampered")
        other = {"inputs": [{"name": "z", "type": "double"}], "outputs": SIG["outputs"]}
        return _app(name, version, int(version), other if version == "5" else SIG)

    served = ServedModel("churn", {"1": _app("churn", "1", 1), "2": _app("churn", "2", 2)},
                         {"champion": "1", "challenger": "2"}, "1", "champion")
    gw = Gateway({"churn": served}, flush_interval_s=3600, aliases_of=lambda name: dict(registry),
                 load_version=load_version)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as c:
            async with gw.router.lifespan_context(gw):
                assert (await c.post("/v1/models/churn/predict", json=body())).json()["version"] == "1"
                registry["champion"] = "4"  # promoted
                assert await gw.follow_aliases() == ["churn@champion: 1 -> 4"]
                r = await c.post("/v1/models/churn/predict", json=body())
                assert r.json()["version"] == "4" and r.json()["predictions"] == [400.5]
                assert (await c.post("/v1/models/churn/versions/1/predict", json=body())).status_code == 200
                registry["champion"] = "5"  # another signature: refused, 4 keeps serving
                registry["challenger"] = "9"  # cannot be loaded: 2 keeps serving
                assert await gw.follow_aliases() == []
                assert await gw.follow_aliases() == []  # refused and failed versions are not loaded again
                assert (await c.post("/v1/models/churn/predict", json=body())).json()["version"] == "4"
                r = await c.post("/v1/models/churn/versions/challenger/predict", json=body())
                assert r.json()["version"] == "2"
                text = (await c.get("/metrics")).text
                assert 'alias="champion",model="churn",outcome="refused"} 1.0' in text
                assert 'alias="challenger",model="churn",outcome="failed"} 1.0' in text

    asyncio.run(main())
    assert loaded == ["4", "5", "9"]


def test_the_openapi_document_describes_each_models_paths() -> None:
    async def test(c: httpx.AsyncClient, gw: Gateway) -> None:
        doc = (await c.get("/openapi.json")).json()
        paths = doc["paths"]
        assert {"/v1/models/churn/predict", "/v1/models/churn/versions/3/predict", "/v1/models/fraud/predict",
                "/v1/feedback", "/v1/models"} <= set(paths)
        op = paths["/v1/models/churn/predict"]["post"]
        record = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]["items"]
        assert record["required"] == ["x"] and record["properties"]["x"] == {"type": "number"}
        ids = [o["operationId"] for p in paths.values() for o in p.values()]
        assert len(ids) == len(set(ids))  # unique operation ids
        assert {"404", "413", "422", "429"} <= set(op["responses"])

    run(None, test)
