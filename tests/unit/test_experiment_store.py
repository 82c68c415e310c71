"""Experiments: the definition's validation, and the SQLite/memory store (counters, feedback once,
status changes). The same store checks run against a real Redis in tests/integration."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlctl.core.errors import StateError, UsageError
from mlctl.serving.experiments.definition import Experiment, new_experiment
from mlctl.serving.experiments.store import ExperimentStore, SqliteStore, Tally, open_store
from tests.support.experiment_store import CHECKS, FAR, make_exp


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variants": "champion:90,challenger:20"}, "100"),
        ({"variants": "champion:100"}, "two"),
        ({"variants": "champion:50,champion:50"}, "champion"),
        ({"strategy": "sticky"}, "--sticky-key"),
        ({"strategy": "thompson", "sticky_key": "user_id"}, "sticky"),
        ({"strategy": "round-robin"}, "round-robin"),
        ({"sticky_key": "user id"}, "sticky-key"),
        ({"reward": "money"}, "money"),
        ({"shadow": "challenger:5"}, "already a variant"),
        ({"shadow": "candidate:0"}, "candidate"),
        ({"feedback_window": "soon"}, "soon"),
        ({"params": {"epsilon": 0.2}}, "epsilon"),
        ({"strategy": "epsilon-greedy", "params": {"epsilon": 1.5}}, "epsilon"),
    ],
)
def test_bad_definitions_are_refused_with_the_reason(kwargs: dict, message: str) -> None:
    args = {"variants": "champion:90,challenger:10", **kwargs}
    with pytest.raises(UsageError) as err:
        new_experiment("ab", "churn", args.pop("variants"), **args)
    assert message in str(err.value)


@pytest.mark.parametrize("name", ["", "a b", "-lead", "x" * 65, "a/b", "é"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="name"):
        new_experiment(name, "churn", "a:50,b:50")


def test_a_definition_round_trips_and_builds_its_strategy() -> None:
    exp = new_experiment("ab", "churn", "champion:70,3:30", shadow="candidate:5", strategy="epsilon-greedy",
                         params={"epsilon": 0.2}, reward="continuous", feedback_window="2h")
    again = Experiment.from_dict(exp.to_dict())
    assert again == exp and again.same_definition(exp)
    assert exp.control == "champion" and exp.feedback_window_s == 7200.0
    assert exp.shadow is not None and (exp.shadow.target, exp.shadow.share) == ("candidate", 5.0)
    assert exp.make_strategy().name == "epsilon-greedy"


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExperimentStore]:
    s = open_store("memory") if request.param == "memory" else open_store("sqlite", base=tmp_path / ".mlctl")
    yield s
    s.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_behaviour(store: ExperimentStore, check: Callable[[ExperimentStore], None]) -> None:
    check(store)


def test_a_tally_merges_and_empties() -> None:
    a, b = Tally(), Tally()
    a.assign("ab", "x", "1", expires_at=FAR)
    b.assign("ab", "x", "2", expires_at=FAR)
    b.error("ab", "x")
    a.merge(b)
    taken = a.take()
    assert not a and taken.stats[("ab", "x")].assigned == 2 and len(taken.requests) == 2


def test_processes_share_the_file_store(tmp_path: Path) -> None:
    base = tmp_path / ".mlctl"
    with open_store("sqlite", base=base) as s:
        s.create(make_exp())
    code = (
        "import sys, time\n"
        "from mlctl.serving.experiments.store import open_store, Tally\n"
        "s = open_store('sqlite', base=__import__('pathlib').Path(sys.argv[1]))\n"
        "for b in range(20):\n"
        "    t = Tally()\n"
        "    for i in range(50): t.assign('ab', 'champion', f'{sys.argv[2]}-{b}-{i}', expires_at=time.time() + 99)\n"
        "    s.flush(t)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(base), tag]) for tag in ("p", "q")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with open_store("sqlite", base=base) as s:
        assert s.stats("ab")["champion"].assigned == 2000  # no lost update between the writers
        assert s.feedback("q-19-49", reward=1.0).variant == "champion"


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "experiments.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateError, match="experiment store"):
        SqliteStore(bad)
    assert bad.read_bytes() == b"not a database at all" * 100


def test_unknown_state_urls_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown serve.state"):
        open_store("postgres://x")


def test_a_file_from_before_a_new_counter_gets_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "experiments.db"
    with sqlite3.connect(path) as conn:  # the first layout, without shadow_agreed
        conn.execute("CREATE TABLE variant_stats (experiment TEXT NOT NULL, variant TEXT NOT NULL, "
                     "assigned INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (experiment, variant))")
        conn.execute("INSERT INTO variant_stats VALUES ('ab', 'champion', 5)")
    with SqliteStore(path) as store:
        t = Tally()
        t.shadow("ab", "champion", agreed=True)
        store.flush(t)
        stats = store.stats("ab")["champion"]
    assert (stats.assigned, stats.shadowed, stats.shadow_agreed) == (5, 1, 1)
