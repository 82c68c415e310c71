"""Behaviour checks every experiment store passes (SQLite and memory in the unit tier, Redis in the
integration tier): each takes an empty store."""

from __future__ import annotations

import time

import pytest

from mlctl.core.errors import NotFound, UsageError
from mlctl.serving.experiments.definition import Experiment, new_experiment
from mlctl.serving.experiments.store import ExperimentStore, Tally

FAR = time.time() + 86400


def make_exp(name: str = "ab", variants: str = "champion:50,challenger:50", **kw: object) -> Experiment:
    return new_experiment(name, "churn", variants, **kw)  # type: ignore[arg-type]


def check_create_is_idempotent_and_a_different_definition_needs_replace(store: ExperimentStore) -> None:
    assert store.create(make_exp()) is True
    assert store.create(make_exp()) is False  # the same definition: no change
    with pytest.raises(UsageError, match="another definition"):
        store.create(make_exp(variants="champion:80,challenger:20"))
    tally = Tally()
    tally.assign("ab", "champion", "r1", expires_at=FAR)
    store.flush(tally)
    assert store.create(make_exp(variants="champion:80,challenger:20"), replace=True) is True
    assert store.get("ab").variants[0].weight == 80.0
    assert store.stats("ab") == {}  # counters restart with a new definition
    assert [e.name for e in store.experiments()] == ["ab"]


def check_status_changes_and_a_stopped_experiment_stays_stopped(store: ExperimentStore) -> None:
    store.create(make_exp())
    assert store.set_status("ab", "paused").status == "paused"
    assert store.set_status("ab", "paused").status == "paused"  # idempotent
    assert store.set_status("ab", "running").status == "running"
    assert store.set_status("ab", "stopped").status == "stopped"
    with pytest.raises(UsageError, match="stopped"):
        store.set_status("ab", "running")
    assert store.create(make_exp()) is True  # a stopped name can be defined again
    assert store.get("ab").status == "running"
    with pytest.raises(NotFound, match="no experiment nope"):
        store.get("nope")


def check_flushes_add_up_and_feedback_counts_once(store: ExperimentStore) -> None:
    store.create(make_exp())
    for batch in range(3):
        tally = Tally()
        for i in range(10):
            variant = "champion" if i % 2 else "challenger"
            tally.assign("ab", variant, f"r{batch}-{i}", expires_at=FAR, fallback=i == 0, prediction=str(i % 3))
        tally.shadow("ab", "candidate")
        tally.error("ab", "champion")
        store.flush(tally)
    stats = store.stats("ab")
    assert stats["champion"].assigned == 15 and stats["challenger"].assigned == 15
    assert stats["challenger"].fallback == 3 and stats["champion"].errors == 3 and stats["candidate"].shadowed == 3

    out = store.feedback("r0-1", reward=1.0)
    assert (out.experiment, out.variant, out.reward) == ("ab", "champion", 1.0)
    with pytest.raises(UsageError, match="already has an outcome"):
        store.feedback("r0-1", reward=1.0)
    assert store.feedback("r0-2", label="2").reward == 1.0  # label equal to the answer given
    assert store.feedback("r0-4", label="2").reward == 0.0
    store.feedback("r1-3", reward=0.5)
    stats = store.stats("ab")
    assert stats["champion"].trials == 2 and stats["champion"].reward_sum == 1.5
    assert stats["champion"].reward_sq_sum == pytest.approx(1.25)
    assert stats["challenger"].trials == 2 and stats["challenger"].reward_sum == 1.0
    arms = {a.name: a for a in store.arms("ab")}
    assert arms["champion"].trials == 2 and arms["champion"].weight == 50.0


def check_feedback_refuses_unknown_expired_and_malformed(store: ExperimentStore) -> None:
    store.create(make_exp())
    tally = Tally()
    tally.assign("ab", "champion", "soon", expires_at=time.time() + 60)
    tally.assign("ab", "champion", "nolabel", expires_at=FAR)
    store.flush(tally)
    with pytest.raises(NotFound, match="unknown or expired"):
        store.feedback("never-seen", reward=1.0)
    with pytest.raises(NotFound, match="unknown or expired"):
        store.feedback("soon", reward=1.0, now=time.time() + 120)
    with pytest.raises(UsageError, match="one of them"):
        store.feedback("soon", reward=1.0, label="x")
    with pytest.raises(UsageError, match="finite"):
        store.feedback("soon", reward=float("nan"))
    with pytest.raises(UsageError, match="no prediction"):
        store.feedback("nolabel", label="1")
    with pytest.raises(UsageError, match="request id"):
        store.feedback("x" * 200, reward=1.0)
    assert store.stats("ab")["champion"].trials == 0  # nothing refused was counted
    assert store.feedback("soon", reward=1.0).reward == 1.0  # a refused reward left the request open
    assert store.stats("ab")["champion"].trials == 1


CHECKS = [check_create_is_idempotent_and_a_different_definition_needs_replace,
          check_status_changes_and_a_stopped_experiment_stays_stopped,
          check_flushes_add_up_and_feedback_counts_once,
          check_feedback_refuses_unknown_expired_and_malformed]


def check_a_flush_retried_is_added_once(store: ExperimentStore) -> None:
    store.create(make_exp())
    tally = Tally()
    tally.assign("ab", "champion", "once-1", expires_at=FAR)
    tally.outcome("ab", "champion", 1.0)
    store.flush(tally)
    store.flush(tally)  # the answer was lost, the gateway tries again: the same batch id
    again = Tally()
    again.assign("ab", "champion", "once-2", expires_at=FAR)
    store.flush(again)
    stats = store.stats("ab")["champion"]
    assert (stats.assigned, stats.trials, stats.reward_sum) == (2, 1, 1.0)


CHECKS.append(check_a_flush_retried_is_added_once)
