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
