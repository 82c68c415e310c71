"""The template miner: grouping, final assignments, stable ids, bounds, persistence and drift."""

from __future__ import annotations

import json

import pytest

from mlctl.core.errors import ConfigError, NotFound, UsageError
from mlctl.logs.miner import MODEL_VERSION, TemplateMiner, event_id_for

USERS = ["webmaster", "admin", "guest", "oracle", "support", "test", "ubnt", "pi"]


def invalid_user_lines() -> list[str]:
    return [f"Invalid user {u} from 10.0.{i}.{i + 1}" for i, u in enumerate(USERS)]


def test_variables_become_wildcards_and_params_are_extracted() -> None:
    matches = TemplateMiner().parse(invalid_user_lines())
    assert {m.template for m in matches} == {"Invalid user <*> from <*>"}
    assert len({m.event_id for m in matches}) == 1
    assert matches[1].params == ["admin", "10.0.1.2"]


def test_wording_with_few_values_splits_events() -> None:
    lines = ["Starting TrustedInstaller initialization.", "Ending TrustedInstaller initialization."] * 5
    matches = TemplateMiner().parse(lines)
    assert [m.template for m in matches[:2]] == lines[:2]
    assert matches[0].event_id != matches[1].event_id
    assert matches[0].params == []


def test_different_lengths_and_partial_tokens() -> None:
    users = ["root", "news", "cyrus", "test", "guest"]  # more values than split_values=4: a variable
    matches = TemplateMiner().parse(
        [f"session opened for user {u} by (uid={i})" for i, u in enumerate(users)] + ["restart."]
    )
    assert {m.template for m in matches[:5]} == {"session opened for user <*> by (uid=<*>)"}
    assert matches[1].params == ["news", "1"]
    assert matches[5].template == "restart."


def test_event_ids_are_stable_across_runs_and_final_after_a_batch() -> None:
    lines = invalid_user_lines() + ["Connection closed by 10.0.0.1 [preauth]"]
    first, second = TemplateMiner().parse(lines), TemplateMiner().parse(list(reversed(lines)))
    assert {m.event_id for m in first} == {m.event_id for m in second}
    assert first[0].event_id == event_id_for("Invalid user <*> from <*>")
    assert first[0].cluster_id == first[3].cluster_id != first[-1].cluster_id


def test_online_add_gives_a_template_at_once_and_generalises() -> None:
    miner = TemplateMiner()
    first = miner.add("Invalid user webmaster from 10.0.0.1")
    assert first.template == "Invalid user webmaster from <*>"
    for line in invalid_user_lines():
        last = miner.add(line)
    assert last.template == "Invalid user <*> from <*>"
    assert miner.cluster_of("Invalid user nobody from 10.9.9.9") == last.cluster_id  # fits without learning
    assert len(miner) == 1


def test_long_lines_are_bounded_and_keep_their_tail_as_one_parameter() -> None:
    miner = TemplateMiner(max_tokens=8)
    words = " ".join(f"w{i}x" for i in range(50_000))
    match = miner.add("payload " + words)
    assert len(match.template.split()) == 8 and match.template.endswith("<*>")
    assert match.params[-1].endswith("w49999x")
    huge = miner.add("blob " + "z" * 1_000_000)
    assert huge.template == "blob <*>" and len(huge.params[0]) == 1_000_000


def test_max_patterns_bounds_memory_but_still_assigns() -> None:
    miner = TemplateMiner(max_patterns=3)
    for i in range(20):
        miner.learn(f"job {'abcdefghijklmnopqrst'[i]}x finished")
    assert len(miner._tokens) == 3
    assert sum(t.size for t in miner.templates()) == 20


def test_save_load_round_trip(tmp_path) -> None:
    miner = TemplateMiner(split_values=3)
    miner.parse(invalid_user_lines() + ["disk full on /dev/sda1"])
    path = miner.save(tmp_path / "models" / "templates.json")
    doc = json.loads(path.read_text())
    assert doc["version"] == MODEL_VERSION and doc["format"] == "mlctl-template-model"
    loaded = TemplateMiner.load(path)
    assert loaded.get_params() == miner.get_params()
    assert [(t.event_id, t.size) for t in loaded.templates()] == [(t.event_id, t.size) for t in miner.templates()]
    assert loaded.add("Invalid user zed from 10.1.1.1").event_id == event_id_for("Invalid user <*> from <*>")


def test_load_refuses_other_versions_and_garbage(tmp_path) -> None:
    path = tmp_path / "m.json"
    doc = TemplateMiner().to_dict()
    doc["version"] = MODEL_VERSION + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="version") as err:
        TemplateMiner.load(path)
    assert err.value.hint
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ConfigError):
        TemplateMiner.load(path)
    path.write_text("not json")
    with pytest.raises(ConfigError):
        TemplateMiner.load(path)
    with pytest.raises(NotFound):
        TemplateMiner.load(tmp_path / "missing.json")


def test_drift_counts_new_templates_per_interval() -> None:
    miner = TemplateMiner()
    miner.add("service started", at=0.0)
    miner.add("service stopped by admin now", at=10.0)
    miner.add("service started", at=3700.0)
    miner.add("disk failure detected on sda", at=7300.0)
    report = miner.drift(3600)
    assert [(b["start"], b["new_templates"]) for b in report] == [(0.0, 2), (3600.0, 0), (7200.0, 1)]
    with pytest.raises(UsageError):
        miner.drift(0)


def test_bad_parameters_and_unknown_cluster() -> None:
    with pytest.raises(UsageError):
        TemplateMiner(similarity=1.5)
    with pytest.raises(UsageError):
        TemplateMiner(max_tokens=1)
    with pytest.raises(NotFound):
        TemplateMiner().template(99)


def test_first_token_is_wording_with_more_values_than_elsewhere() -> None:
    commands = ["boot", "wait", "halt", "risBoot", "clusterAddMember", "bootGenvmunix"]  # 6 > split_values
    lines = [f"{c} (command {i})" for i in range(3) for c in commands]
    matches = TemplateMiner().parse(lines)
    assert {m.template for m in matches} == {f"{c} (command <*>)" for c in commands}
    assert matches[0].params == ["0"]
    # past first_split_values the first token is a variable too
    narrow = TemplateMiner(first_split_values=5).parse(lines)
    assert {m.template for m in narrow} == {"<*> (command <*>)"}


def test_values_shared_by_two_templates_are_variables() -> None:
    users = ["cyrus", "news", "test"]  # few values: alone they would look like wording
    closed = [f"session closed for user {u}" for u in users] * 2
    alone = TemplateMiner().parse(closed)
    assert len({m.template for m in alone}) == 3
    opened = [f"session opened for user {u} by (uid={i})" for i, u in enumerate(users)] * 2
    matches = TemplateMiner().parse(closed + opened)
    assert {m.template for m in matches} == {"session closed for user <*>", "session opened for user <*> by (uid=<*>)"}
    assert matches[1].params == ["news"]


def test_constant_punctuation_beside_masked_values_is_wording() -> None:
    lines = [f"Fan speeds ( {3500 + i} {3400 + i} **** {3300 + i} )" for i in range(5)]
    lines += [f"Fan speeds ( {3500 + i} {3400 + i} {3200 + i} {3300 + i} )" for i in range(5)]
    matches = TemplateMiner().parse(lines)
    assert matches[0].template == "Fan speeds ( <*> <*> **** <*> )"
    assert matches[5].template == "Fan speeds ( <*> <*> <*> <*> )"


def test_partly_masked_values_split_on_their_constant_parts_only() -> None:
    lines = [f"session opened for user {u} by (uid={i})" for i, u in enumerate(["ann", "bob", "cy", "dan", "eve"])]
    lines += ["session opened for user root by LOGIN(uid=0)"] * 3
    matches = TemplateMiner().parse(lines)
    assert matches[0].template == "session opened for user <*> by (uid=<*>)"
    assert matches[-1].template == "session opened for user root by LOGIN(uid=<*>)"
    # "()" is "(<*>)" with an empty value: one template
    names = ["a.example.com", "", "b.example.org", ""]
    hosts = [f"connection from 10.0.0.{i} ({h}) at noon" for i, h in enumerate(names)]
    assert len({m.event_id for m in TemplateMiner().parse(hosts)}) == 1


def test_consolidation_does_not_depend_on_the_order_of_lines() -> None:
    import random

    lines = (
        invalid_user_lines()
        + [f"{c} (command {i})" for i in range(3) for c in ["boot", "wait", "halt", "risBoot", "halt2x"]]
        + [f"session closed for user {u}" for u in ["cyrus", "news", "test"]]
        + [f"session opened for user {u} by (uid=0)" for u in ["cyrus", "news", "test"]]
        + ["Starting TrustedInstaller initialization.", "Ending TrustedInstaller initialization."] * 3
    )
    reference = TemplateMiner().parse(lines)
    for seed in range(3):
        order = random.Random(seed).sample(range(len(lines)), len(lines))
        shuffled = TemplateMiner().parse([lines[i] for i in order])
        assert {i: m.event_id for i, m in zip(order, shuffled, strict=True)} == {
            i: m.event_id for i, m in enumerate(reference)
        }


def test_online_fit_and_similarity_merge_between_consolidations() -> None:
    miner = TemplateMiner(similarity=0.5)
    a = miner.learn("disk sda is full now")
    assert miner.learn("disk sdb is full now") == a  # 4 of 5 positions equal: merged online
    assert miner.template(a) == "disk <*> is full now"
    assert miner.cluster_of("disk sdz is full now") == a  # fits the generalised template
    b = miner.learn("fan one stopped spinning at all")
    assert b != a and miner.template(b) == "fan one stopped spinning at all"
