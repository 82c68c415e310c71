"""``mlctl classify-logs`` on the ``logs`` template: parse, classify, train, route, search, dag, retrain."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from mlctl.scaffold import render_template


@pytest.fixture
def proj(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    render_template("logs", isolated_env / "shop-logs")
    monkeypatch.chdir(isolated_env / "shop-logs")
    return isolated_env / "shop-logs"


def test_parse_csv_contract_and_template_model(cli, proj: Path) -> None:  # noqa: ANN001
    r = cli("classify-logs", "parse", "data/sample.log", "-o", "csv")
    assert r.code == 0, r.err
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert list(rows[0]) == ["LineId", "Date", "Time", "Level", "Component", "EventId", "EventTemplate",
                             "ParameterList"]  # fmt: skip
    assert len(rows) == 403 and [int(x["LineId"]) for x in rows] == list(range(1, 404))
    unmatched = [x for x in rows if x["EventId"] == "unparsed"]
    assert len(unmatched) == 1 and "did not match the log format" in r.err
    assert any(x["EventTemplate"].startswith("Failed password for invalid user <*> from <*>") for x in rows)
    assert (proj / ".mlctl/logs/templates.json").is_file()
    table = cli("classify-logs", "parse", "data/sample.log", "--no-save-templates")
    assert "403 lines, 1 unparsed" in table.out


def test_classify_applies_rules_and_marks_unparsed(cli, proj: Path) -> None:  # noqa: ANN001
    r = cli("classify-logs", "classify", "data/sample.log", "-o", "jsonl")
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert len(rows) == 403
    panic = next(x for x in rows if "Kernel panic" in x["raw"])
    assert (panic["class"], panic["rule"], panic["severity"]) == ("critical", "kernel-panic", "critical")
    health = next(x for x in rows if "GET /health" in x["raw"])
    assert health["class"] == "normal" and health["rule"] == "health-checks-are-normal"
    assert next(x for x in rows if "does not match" in x["raw"])["class"] == "unparsed"
    assert {x["class"] for x in rows} >= {"security", "resource", "network", "normal"}


def test_train_route_search_and_retrain(cli, proj: Path) -> None:  # noqa: ANN001
    r = cli("classify-logs", "train", "--data", "data/labelled.csv", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["registered"]["name"] == "shop-logs-classifier" and doc["metrics"]["accuracy"] > 0.9
    assert doc["classes"]["security"] > 0 and doc["lines"] == 300
    r = cli("classify-logs", "classify", "data/sample.log", "--route", "-o", "json")
    routed = json.loads(r.out)
    assert routed["sinks"]["index"] == 403 and routed["sinks"]["archive"] == 403
    assert routed["sinks"]["alerts"] == sum(routed["classes"].get(c, 0) for c in ("security", "resource", "critical"))
    again = json.loads(cli("classify-logs", "classify", "data/sample.log", "--route", "-o", "json").out)
    assert again["sinks"] == routed["sinks"]
    hits = json.loads(cli("classify-logs", "search", "password", "--class", "security", "-n", "500", "-o", "json").out)
    assert len(hits) == routed["classes"]["security"]  # indexed twice, stored once (deterministic ids)
    assert all(h["class"] == "security" and "password" in h["raw"].lower() for h in hits)
    r = cli("classify-logs", "retrain", "--since", "3650d", "--data", "data/labelled.csv", "-o", "json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["steps"] == ["pull", "train", "evaluate", "register", "publish"] and report["lines"] >= 403
    assert report["current"] is not None and report["better"] in (True, False)
    assert (report["registered"] is not None) == report["better"] == report["published"]


def test_dag_generation(cli, proj: Path) -> None:  # noqa: ANN001
    r = cli("classify-logs", "dag", "--out", "dags/retrain.py", "--schedule", "0 3 * * *", "-o", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["dag_id"] == "mlctl_logs_retrain_shop_logs" and doc["schedule"] == "0 3 * * *"
    source = (proj / "dags/retrain.py").read_text()
    compile(source, "retrain.py", "exec")
    assert "from airflow.sdk import dag, task" in source and repr(str(proj)) in source
    assert cli("classify-logs", "dag", "--schedule", "sometimes").code == 2
    assert cli("classify-logs", "dag", "--dag-id", "bad id!").code == 2
    dry = cli("classify-logs", "dag", "--dry-run")
    assert "retrain_log_classifier()" in dry.out and not (proj / "dags/mlctl_logs_retrain.py").exists()


@pytest.mark.parametrize(("args", "code", "text"), [
    (["parse", "missing.log"], 2, "no such file"),
    (["parse", "data/sample.log", "-f", "<Date> <Time>"], 2, "no <Content> placeholder"),
    (["parse", "data/sample.log", "-f", "nosuchpreset"], 2, "unknown log format preset"),
    (["classify", "data/sample.log", "--rules", "missing.yaml"], 2, "no rules file"),
    (["train", "--data", "data/sample.log"], 2, "no label column"),
    (["search", "x"], 2, "no log index yet"),
    (["stream"], 2, "no input to stream"),
])  # fmt: skip
def test_bad_input(cli, proj: Path, args: list[str], code: int, text: str) -> None:  # noqa: ANN001
    r = cli("classify-logs", *args, "-o", "json")
    assert r.code == code, r.err
    assert text in json.loads(r.err)["error"]["message"]


def test_malformed_rules_name_the_rule(cli, proj: Path) -> None:  # noqa: ANN001
    rules = "rules:\n  - name: ok\n    regex: a\n    class: x\n  - name: broken\n    regex: '('\n    class: y\n"
    (proj / "rules.yaml").write_text(rules)
    r = cli("classify-logs", "classify", "data/sample.log")
    assert r.code == 2 and "rule 2 ('broken'): bad regex" in r.err


def test_binary_garbage_and_huge_lines_are_kept(cli, proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    data = b"\xff\xfe\x00garbage\n\n" + b"2026-11-01 12:00:00 INFO app: " + b"x" * 1_000_000 + b"\nlast\n"
    (proj / "weird.log").write_bytes(data)
    r = cli("classify-logs", "classify", "weird.log", "-o", "jsonl")
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert r.code == 0 and [x["LineId"] for x in rows] == [1, 2, 3, 4]
    assert rows[0]["class"] == rows[1]["class"] == rows[3]["class"] == "unparsed"
    assert len(rows[2]["raw"]) > 1_000_000 and rows[2]["class"] != "unparsed"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"2026-11-01 12:00:00 INFO a: hello\n")))
    assert cli("classify-logs", "parse", "-", "-o", "csv").out.splitlines()[1].startswith("1,2026-11-01,12:00:00")


@pytest.mark.timeout(60)
def test_a_long_line_that_does_not_match_is_unparsed_not_hung(cli, proj: Path) -> None:  # noqa: ANN001
    words = " ".join(f"tok{i}" for i in range(400))  # took over 120 s with lazy (.*?) fields
    warn = "2026-11-01 12:00:00 WARN " + "disk usage is high on volume " * 110  # 3.2 KB, no "Component:"
    (proj / "long.log").write_text(f"{words}\n{warn}\n2026-11-01 12:00:01 INFO app: ok\n")
    r = cli("classify-logs", "parse", "long.log", "-o", "jsonl")
    assert r.code == 0, r.err
    assert [json.loads(line)["EventId"] for line in r.out.splitlines()][:2] == ["unparsed", "unparsed"]
    r = cli("classify-logs", "classify", "long.log", "-o", "jsonl")
    assert r.code == 0 and [json.loads(x)["class"] for x in r.out.splitlines()][:2] == ["unparsed", "unparsed"]
    r = cli("classify-logs", "stream", "--from", "long.log", "--sink", "stdout", "-o", "json")
    assert r.code == 0, r.err


def test_empty_input_as_csv_prints_the_header(cli, proj: Path) -> None:  # noqa: ANN001
    (proj / "empty.log").write_text("")
    r = cli("classify-logs", "parse", "empty.log", "-o", "csv")
    assert r.code == 0 and r.out == "LineId,Date,Time,Level,Component,EventId,EventTemplate,ParameterList\n"
    r = cli("classify-logs", "classify", "empty.log", "-o", "csv")
    assert r.code == 0 and r.out == "LineId,class,confidence,severity,rule,EventId,EventTemplate,raw\n"
    assert cli("classify-logs", "parse", "empty.log", "-o", "jsonl").out == ""


@pytest.mark.parametrize(("args", "text"), [
    (["parse", "data/sample.log", "-f", "<1abc> <Content>"], "not a valid field name"),
    (["parse", "data/sample.log", "-f", ""], "empty log format"),
    (["classify", "data/sample.log", "-f", " "], "empty log format"),
    (["train", "--data", "data/labelled.csv", "-f", ""], "empty log format"),
])  # fmt: skip
def test_an_invalid_or_empty_log_format_is_a_usage_error(cli, proj: Path, args: list[str], text: str) -> None:  # noqa: ANN001
    r = cli("classify-logs", *args, "-o", "json")
    assert r.code == 2, r.err
    assert text in json.loads(r.err)["error"]["message"] and r.out == ""


def test_outside_a_project_nothing_is_written_unless_asked(cli, isolated_env: Path) -> None:  # noqa: ANN001
    (isolated_env / "app.log").write_text(
        "2026-11-01 12:00:00 INFO app: started job 1\n2026-11-01 12:00:01 ERROR db: connection refused\n"
    )
    for args in (["parse", "app.log", "-o", "csv"], ["classify", "app.log", "-o", "jsonl"]):
        r = cli("classify-logs", *args, "-f", "<Date> <Time> <Level> <Component>: <Content>")
        assert r.code == 0, r.err
        assert sorted(p.name for p in isolated_env.iterdir()) == ["app.log"]  # no .mlctl/ left behind
    r = cli("classify-logs", "parse", "app.log", "--templates", "model.json", "-f", "<Date> <Time> <Level> <Content>")
    assert r.code == 0 and (isolated_env / "model.json").is_file()
    r = cli("classify-logs", "parse", "app.log", "--templates", "model.json", "-o", "json",
            "-f", "<Date> <Time> <Level> <Content>")  # fmt: skip
    assert r.code == 0 and json.loads(r.out)["lines"] == 2  # loaded back and updated
    r = cli("classify-logs", "classify", "app.log", "--route", "-o", "json")
    assert r.code == 0 and "not in a project: lines written to" in r.err and str(isolated_env) in r.err
    r = cli("classify-logs", "train", "--data", "app.log", "-o", "json")
    assert r.code == 2 and "no mlctl.yaml found" in json.loads(r.err)["error"]["message"]


def _openssh_like(n: int = 120) -> str:
    """An sshd log as syslog writes it (generated: tests never read ../shared/data)."""
    out = []
    for i in range(n):
        pid, ip = 24200 + i, f"173.234.{i % 7}.{i % 250}"
        message = [
            f"Failed password for invalid user user{i % 9} from {ip} port {40000 + i} ssh2",
            f"Invalid user user{i % 9} from {ip}",
            f"Received disconnect from {ip}: 11: Bye Bye [preauth]",
            "pam_unix(sshd:auth): check pass; user unknown",
        ][i % 4]
        out.append(f"Dec 10 06:{i % 60:02d}:{(7 * i) % 60:02d} LabSZ sshd[{pid}]: {message}")
    return "\n".join(out) + "\n"


def test_parse_without_a_format_detects_the_header(cli, isolated_env: Path) -> None:  # noqa: ANN001
    (isolated_env / "app.log").write_text(_openssh_like())
    r = cli("classify-logs", "parse", "app.log", "-o", "json")
    assert r.code == 0, r.err
    assert "log format: detected preset syslog, matching 120 of the first 120 line(s)" in r.err
    doc = json.loads(r.out)
    assert doc["log_format"] == {"format": "syslog", "detected": True, "how": "preset", "preset": "syslog",
                                 "sampled": 120, "matched": 120, "continued": 0}  # fmt: skip
    assert doc["unparsed"] == 0 and {"lines", "unparsed", "templates", "rows"} <= set(doc)
    templates = {t["EventTemplate"] for t in doc["templates"]}
    assert "Failed password for invalid user <*> from <*> port <*> ssh2" in templates
    assert not any(word in t for t in templates for word in ("LabSZ", "sshd[", "Dec", "06:"))  # no header token
    csv_out = cli("classify-logs", "parse", "app.log", "-o", "csv").out
    assert csv_out.splitlines()[0] == "LineId,Month,Day,Time,Host,Component,PID,EventId,EventTemplate,ParameterList"


def test_auto_is_the_default_only_when_no_format_is_configured(cli, proj: Path) -> None:  # noqa: ANN001
    r = cli("classify-logs", "classify", "data/sample.log", "--no-model", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["log_format"] == {
        "format": "<Date> <Time> <Level> <Component>: <Content>", "detected": False}  # fmt: skip
    assert "log format: detected" not in r.err  # the project's logs.log_format
    config = proj / "mlctl.yaml"
    config.write_text("\n".join(x for x in config.read_text().splitlines() if "log_format:" not in x) + "\n")
    r = cli("classify-logs", "classify", "data/sample.log", "--no-model", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["log_format"]["detected"] and doc["log_format"]["how"] == "inferred"
    assert "log format: detected '<Date> <Time> <Level> <Component>: <Content>'" in r.err
    assert cli("classify-logs", "parse", "data/sample.log", "-q").err == ""  # --quiet hides it
    r = cli("classify-logs", "parse", "data/sample.log", "-f", "raw", "-o", "json")
    assert json.loads(r.out)["log_format"] == {"format": "raw", "detected": False} and "detected" not in r.err


def test_evaluate_can_detect_each_format_instead_of_reading_formats_json(cli, isolated_env: Path) -> None:  # noqa: ANN001
    folder = isolated_env / "loghub" / "Ssh"
    folder.mkdir(parents=True)
    (folder / "Ssh_2k.log").write_text(_openssh_like(40))
    kinds = [
        "Failed password for invalid user <*> from <*> port <*> ssh2",
        "Invalid user <*> from <*>",
        "Received disconnect from <*>: <*>: Bye Bye [preauth]",
        "pam_unix(sshd:auth): check pass; user unknown",
    ]
    rows = [f'{i + 1},E{i % 4},"{kinds[i % 4]}"' for i in range(40)]
    (folder / "Ssh_2k.log_structured_corrected.csv").write_text("LineId,EventId,EventTemplate\n" + "\n".join(rows))
    r = cli("classify-logs", "evaluate", "--data", "loghub", "-f", "auto", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["systems"][0]["log_format"] == "syslog" and doc["systems"][0]["unparsed"] == 0
    assert doc["average"]["grouping_accuracy"] == 1.0
