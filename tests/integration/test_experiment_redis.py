"""Experiment state in a real Redis server: the store checks every backend passes, two gateway
processes sharing it (counts add up, the same sticky key gets the same variant in both), and a
Redis that is not there."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from mlctl.core.errors import ServiceUnavailable
from mlctl.engines import Service, free_port
from mlctl.serving.experiments.store import ExperimentStore, RedisStore
from tests.support.experiment_store import CHECKS, make_exp

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis: Service) -> Iterator[RedisStore]:
    s = RedisStore(redis.url, prefix=f"test-{uuid.uuid4().hex[:8]}")  # each test its own keys
    yield s
    s.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_behaviour(store: ExperimentStore, check: Callable[[ExperimentStore], None]) -> None:
    check(store)


# One "gateway replica": assigns N requests of experiment ab with the experiment's own strategy, as
# read from Redis, flushing every 100; prints the variant of each sticky key it saw.
REPLICA = r"""
import json, random, sys, time
from mlctl.serving.experiments.store import RedisStore, Tally
url, prefix, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = RedisStore(url, prefix=prefix)
exp = store.get("ab")
strategy = exp.make_strategy()
arms = store.arms("ab")
rng = random.Random(tag)
tally, seen = Tally(), {}
for i in range(n):
    key = f"user-{i % 500}" if i % 10 else None  # every tenth request lacks the key
    variant = strategy.choose(arms, key=key, rng=rng)
    if key is not None:
        seen[key] = variant
    tally.assign("ab", variant, f"{tag}-{i}", expires_at=time.time() + 600, fallback=key is None)
    if i % 100 == 99:
        store.flush(tally.take())
store.flush(tally.take())
print(json.dumps(seen))
"""


def test_two_replicas_agree_and_their_counts_add_up(redis: Service, store: RedisStore) -> None:
    store.create(make_exp(variants="champion:70,challenger:30", sticky_key="user_id"))
    n = 2000
    procs = [subprocess.Popen([sys.executable, "-c", REPLICA, redis.url, store.prefix, tag, str(n)],
                              stdout=subprocess.PIPE, text=True) for tag in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    seen_a, seen_b = (json.loads(o) for o in outs)
    assert seen_a == seen_b and len(seen_a) == 450  # same key -> same variant in both replicas
    stats = store.stats("ab")
    assert sum(s.assigned for s in stats.values()) == 2 * n  # no lost or double count
    assert sum(s.fallback for s in stats.values()) == 2 * n // 10
    share = sum(v == "challenger" for v in seen_a.values()) / len(seen_a)
    assert 0.2 < share < 0.4  # 30% of users, give or take sampling
    out = store.feedback("b-1999", reward=1.0)  # flushed by the other process
    assert out.experiment == "ab" and store.stats("ab")[out.variant].trials == 1


def test_a_redis_that_is_not_there_is_exit_4_with_its_url() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    s = RedisStore(url, timeout=2.0)
    with pytest.raises(ServiceUnavailable, match="unreachable") as err:
        s.experiments()
    assert url in str(err.value) and err.value.exit_code == 4


# Two gateway processes (the real Gateway over HTTP, uvicorn), one Redis: the models are small
# in-process estimators, so no registry is needed; everything else is what `mlctl serve start` runs.
GATEWAY = r"""
import json, sys
import numpy as np
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.serving import Predictor, create_app
from mlctl.serving.experiments.store import RedisStore
from mlctl.serving.gateway import Gateway, ServedModel
from mlctl.serving.runner import run_asgi

class Versioned:
    def __init__(self, v): self.v = v
    def predict(self, rows): return rows[:, 0] + 100.0 * self.v

sig = {"inputs": [{"name": "x", "type": "double"}], "outputs": [{"name": "y", "type": "double"}]}
apps = {v: create_app(Predictor(ModelArtifact(name="churn", version=v, alias=None, path="m", sha256="ab" * 32,
                                              signature=sig), Versioned(int(v)))) for v in ("1", "2")}
store = RedisStore(sys.argv[1], prefix=sys.argv[2])
gw = Gateway({"churn": ServedModel("churn", apps, {"champion": "1", "challenger": "2"}, "1", "champion")},
             store=store, flush_interval_s=0.2)
run_asgi(gw, lambda endpoint: endpoint, port=0, on_ready=lambda e: print(e, flush=True), log_level="warning")
"""


def test_two_gateway_processes_share_one_experiment(redis: Service, store: RedisStore) -> None:
    import signal
    import urllib.request

    store.create(make_exp(variants="champion:50,challenger:50", sticky_key="user_id"))
    procs = [subprocess.Popen([sys.executable, "-c", GATEWAY, redis.url, store.prefix], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        endpoints = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
        assert all(e.startswith("http://127.0.0.1:") for e in endpoints), endpoints

        def predict(endpoint: str, user: str) -> tuple[str, str]:
            body = json.dumps({"records": [{"x": 1.0}], "user_id": user}).encode()
            req = urllib.request.Request(endpoint + "/v1/models/churn/predict", body,
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.headers["X-Mlctl-Variant"], json.load(resp)["request_id"]

        variants = {}
        for i in range(200):
            a, _ = predict(endpoints[0], f"u{i}")
            b, rid = predict(endpoints[1], f"u{i}")
            assert a == b, f"user u{i}: {a} on one gateway, {b} on the other"
            variants[f"u{i}"] = a
        assert set(variants.values()) == {"champion", "challenger"}
        fb = urllib.request.Request(endpoints[0] + "/v1/feedback",  # feedback to the other replica
                                    json.dumps({"request_id": rid, "reward": 1}).encode(),
                                    {"Content-Type": "application/json"})
        with urllib.request.urlopen(fb, timeout=60) as resp:
            assert json.load(resp)["variant"] == variants["u199"]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=60) for p in procs]
    assert codes == [0, 0]  # stopped gracefully, their last counts flushed
    stats = store.stats("ab")
    assert sum(s.assigned for s in stats.values()) == 400 and sum(s.trials for s in stats.values()) == 1
