"""Rules, weak labels, the trained classifier and the project pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlctl.core.config import load_config
from mlctl.core.errors import EXIT_USAGE, NotFound, UsageError, exit_code_for
from mlctl.logs.classify import LogClassifier, class_counts, classify, features, level_severity, weak_label
from mlctl.logs.pipeline import LogPipeline, build_router, resolve_sink_url
from mlctl.logs.record import UNPARSED, LogRecord, make_doc_id
from mlctl.logs.rules import load_rules, parse_rules
from mlctl.logs.spec import LogsSpec
from tests.support.logs import FORMAT, lines


def _rec(content: str, level: str = "INFO", template: str | None = None, **kw: object) -> LogRecord:
    return LogRecord(1, f"{level} x: {content}", headers={"Level": level, "Component": "x"}, content=content,
                     template=template, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize(("content", "level", "expected"), [
    ("Failed password for invalid user bob from 1.2.3.4", "INFO", ("security", "info")),
    ("Out of memory: Kill process 12", "ERROR", ("resource", "error")),
    ("Connection refused to 10.0.0.1:80", "WARN", ("network", "warning")),
    ("instruction cache parity error corrected", "INFO", ("hardware", "info")),
    ("NullPointerException in handler", "ERROR", ("error", "error")),
    ("request served in 3 ms", "FATAL", ("error", "critical")),
    ("0 errors found", "INFO", ("normal", "info")),
    ("request served", "", ("normal", "info")),
])  # fmt: skip
def test_weak_labels(content: str, level: str, expected: tuple[str, str]) -> None:
    assert weak_label(_rec(content, level)) == expected


def test_unparsed_and_levels() -> None:
    assert weak_label(LogRecord(1, "garbage", parsed=False)) == (UNPARSED, "warning")
    assert level_severity({"Level": "[WARN]"}) == "warning" and level_severity({"Level": "E"}) == "error"
    assert level_severity({"Level": "chatty"}) is None and level_severity({}) is None
    assert features(_rec("a 1", template="a <*>")) == "a <*> level=info component=x"


def test_rules_override_and_validate(tmp_path: Path) -> None:
    rules = parse_rules({"rules": [
        {"name": "ssh", "regex": "failed password", "ignore_case": True, "class": "intrusion", "severity": "critical"},
        {"name": "quiet", "headers": {"Component": "x"}, "template": "heartbeat <*>", "class": "normal"},
    ]})  # fmt: skip
    records = [_rec("Failed password for root"), _rec("heartbeat 3", template="heartbeat <*>"), _rec("other")]
    classify(records, rules=rules)
    assert [(r.cls, r.rule, r.severity) for r in records] == [
        ("intrusion", "ssh", "critical"), ("normal", "quiet", "info"), ("normal", None, "info")]  # fmt: skip
    bad = [
        ({"rules": [{"name": "r", "regex": "("}]}, "rule 1 ('r'): missing 'class'"),
        ({"rules": [{"name": "r", "regex": "(", "class": "c"}]}, "bad regex"),
        ({"rules": [{"class": "c"}]}, "no condition"),
        ({"rules": [{"class": "c", "regex": "a", "colour": "red"}]}, "unknown key 'colour'"),
        ({"rules": [{"class": "c", "regex": "a", "severity": "loud"}]}, "severity 'loud'"),
        ({"rules": [{"name": "a", "class": "c", "regex": "a"}, {"name": "a", "class": "c", "regex": "b"}]},
         "rule 2 ('a'): duplicate name"),
        ({"rules": "nope"}, "must be a list"),
        ({"rules": [3]}, "rule 1: is not a mapping"),
    ]  # fmt: skip
    for doc, text in bad:
        with pytest.raises(UsageError) as err:
            parse_rules(doc)
        assert text in err.value.message and exit_code_for(err.value) == EXIT_USAGE
    (tmp_path / "r.yaml").write_text("rules:\n  - name: x\n    regex: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML at line"):
        load_rules(tmp_path / "r.yaml")
    with pytest.raises(NotFound):
        load_rules(tmp_path / "missing.yaml")
    assert parse_rules(None) == []


def test_classifier_learns_saves_and_refuses_tampering(tmp_path: Path) -> None:
    records = [_rec(f"block {i} served", template="block <*> served") for i in range(30)]
    records += [_rec(f"disk {i} failing", "ERROR", template="disk <*> failing") for i in range(30)]
    labels = ["normal"] * 30 + ["hardware"] * 30
    model = LogClassifier.fit(records, labels)
    meta = model.save(tmp_path / "m")
    assert meta["classes"] == ["hardware", "normal"] and len(meta["sha256"]) == 64
    again = LogClassifier.load(tmp_path / "m")
    out = classify([_rec("disk 99 failing", "ERROR", template="disk <*> failing"), LogRecord(2, "?", parsed=False)],
                   model=again)  # fmt: skip
    assert out[0].cls == "hardware" and out[0].confidence > 0.5 and out[0].severity == "error"
    assert out[1].cls == UNPARSED
    assert class_counts(out) == {"hardware": 1, "unparsed": 1}
    (tmp_path / "m" / "classifier.skops").write_bytes(b"tampered")
    with pytest.raises(Exception, match="SHA-256"):
        LogClassifier.load(tmp_path / "m")
    with pytest.raises(NotFound):
        LogClassifier.load(tmp_path / "none")
    with pytest.raises(UsageError, match="at least two classes"):
        LogClassifier.fit(records[:3], ["normal"] * 3)


def test_spec_routes_must_name_sinks() -> None:
    with pytest.raises(ValueError, match="unknown sink 'nope'"):
        LogsSpec(routes=[{"classes": ["error"], "sinks": ["nope"]}])
    with pytest.raises(ValueError, match="not both"):
        LogsSpec(log_format="<Content>", preset="syslog")
    assert LogsSpec(routes=[{"classes": "error", "sinks": ["index"]}]).routes[0].class_set() == frozenset({"error"})


def test_pipeline_parses_classifies_routes_and_keeps_every_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text(
        f"logs:\n  log_format: '{FORMAT}'\n  sinks:\n    index: sqlite:///.mlctl/logs.db\n"
        "    alerts: .mlctl/alerts.jsonl\n  routes:\n    - classes: [security]\n      sinks: [alerts]\n"
        "    - classes: '*'\n      sinks: [index]\n"
    )
    loaded = load_config()
    pipe = LogPipeline(loaded)
    raw = [LogRecord(i, text, source="t") for i, text in enumerate([*lines(200), "", "\x00\x01 binary"], 1)]
    out = pipe.process(raw)
    assert len(out) == 202 and sum(not r.parsed for r in out) == 2
    assert {r.cls for r in out if not r.parsed} == {UNPARSED}
    assert {r.cls for r in out if r.parsed} >= {"normal", "security", "resource", "network"}
    router = build_router(loaded)
    router.write(out)
    router.close()
    alerts = (project / ".mlctl" / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == sum(r.cls == "security" for r in out)
    path = pipe.save_templates()
    assert LogPipeline(loaded).miner.templates()  # loaded back from the project
    assert path == project / ".mlctl" / "logs" / "templates.json"
    assert resolve_sink_url("stdout", project) == "stdout"
    assert make_doc_id("t", 1, out[0].raw) == out[0].doc_id
