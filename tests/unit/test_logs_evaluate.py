"""Grouping and parsing accuracy by hand on tiny examples, classification metrics, and evaluate_parsing."""

from __future__ import annotations

import csv
import json

import pytest

from mlctl.core.errors import NotFound, UsageError
from mlctl.logs.evaluate import (
    bgl_alert,
    classification_metrics,
    evaluate_parsing,
    grouping_accuracy,
    parsing_accuracy,
    true_groups,
)


def test_grouping_accuracy_by_hand() -> None:
    truth = {1: "A", 2: "A", 3: "B", 4: "B", 5: "C"}
    # 1,2 right; 3 and 4 split apart (both wrong); 5 right.
    assert grouping_accuracy({1: "x", 2: "x", 3: "y", 4: "z", 5: "w"}, truth) == pytest.approx(3 / 5)
    # everything merged: only a group equal to a true group counts -> none
    assert grouping_accuracy(dict.fromkeys(truth, "x"), truth) == 0.0
    # labels are arbitrary; a missing line is wrong and breaks its group
    assert grouping_accuracy({1: 7, 2: 7, 3: 8, 4: 8, 5: 9}, truth) == 1.0
    assert grouping_accuracy({1: 7, 3: 8, 4: 8, 5: 9}, truth) == pytest.approx(3 / 5)
    assert grouping_accuracy({}, {}) == 0.0


def test_parsing_accuracy_normalises_whitespace() -> None:
    truth = {1: "open <*>  file", 2: "close <*>", 3: "x"}
    assert parsing_accuracy({1: "open <*> file", 2: "close file", 3: "x"}, truth) == pytest.approx(2 / 3)


def test_classification_metrics_by_hand() -> None:
    y_true = ["alert", "alert", "alert", "normal", "normal"]
    y_pred = ["alert", "alert", "normal", "alert", "normal"]
    m = classification_metrics(y_true, y_pred, positive="alert")
    assert (m.tp, m.fp, m.fn, m.support) == (2, 1, 1, 3)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(2 / 3)
    none = classification_metrics(["normal"], ["normal"], positive="alert")
    assert (none.precision, none.recall, none.f1) == (0.0, 0.0, 0.0)
    with pytest.raises(UsageError):
        classification_metrics(["a"], [], positive="a")
    assert [bgl_alert(x) for x in ["-", "KERNDTLB", " - "]] == ["normal", "alert", "normal"]


def write_system(root, name: str, lines: list[str], truth: list[tuple[str, str]]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}_2k.log").write_text("\n".join(lines) + "\n")
    with (folder / f"{name}_2k.log_structured_corrected.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["LineId", "Level", "Content", "EventId", "EventTemplate"])
        for i, (line, (eid, template)) in enumerate(zip(lines, truth, strict=True), 1):
            w.writerow([i, line.split()[0], line.split(" ", 1)[1], eid, template])


def test_evaluate_parsing_on_a_tiny_corpus(tmp_path) -> None:
    users = ["ann", "bob", "cyd", "dan", "eve", "fay"]
    lines = [f"INFO Invalid user {u} from 10.0.0.{i}" for i, u in enumerate(users)] + ["WARN disk full"]
    truth = [("E1", "Invalid user <*> from <*>")] * 6 + [("E2", "disk full")]
    write_system(tmp_path, "Sys", lines, truth)
    # the second system's truth puts the two kinds of line in one group: 2 of 4 lines can never be right
    write_system(
        tmp_path,
        "Other",
        ["INFO a 1", "INFO a 2", "INFO b c d", "INFO b c e f"],
        [("E1", "a <*>"), ("E1", "a <*>"), ("E2", "b <*>"), ("E2", "b <*>")],
    )
    (tmp_path / "formats.json").write_text(json.dumps({"Sys": "<Level> <Content>", "Other": "<Level> <Content>"}))
    report = evaluate_parsing(tmp_path)
    by = {s.system: s for s in report.systems}
    assert by["Sys"].grouping_accuracy == 1.0 and by["Sys"].parsing_accuracy == 1.0
    assert by["Sys"].templates_true == 2 and by["Sys"].templates_found == 2
    assert by["Other"].grouping_accuracy == 0.5 and by["Other"].parsing_accuracy == 0.5
    assert report.grouping_accuracy == pytest.approx(0.75)
    assert report.to_dict()["average"]["parsing_accuracy"] == pytest.approx(0.75)
    only = evaluate_parsing(tmp_path, systems=["Sys"], formats={"Sys": "<Level> <Content>"})
    assert [s.system for s in only.systems] == ["Sys"]


def test_evaluate_parsing_errors(tmp_path) -> None:
    with pytest.raises(NotFound):
        evaluate_parsing(tmp_path / "none")
    with pytest.raises(NotFound):
        evaluate_parsing(tmp_path)  # no formats.json
    (tmp_path / "formats.json").write_text(json.dumps({"Sys": "<Content>"}))
    with pytest.raises(UsageError):
        evaluate_parsing(tmp_path, systems=["Nope"])
    with pytest.raises(NotFound):
        evaluate_parsing(tmp_path)  # no files for Sys


def test_truth_conventions_template_or_event_id(tmp_path) -> None:
    users = ["root", "guest", "root", "guest", "root", "guest"]
    lines = [f"INFO auth failure user={u}" for u in users] + ["WARN disk full", "WARN disk full"]
    # one corrected template, but two EventIds split by user (as Linux's corrected file does)
    truth = [("E1" if u == "root" else "E2", "auth failure user=<*>") for u in users]
    truth += [("E3", "disk full")] * 2
    write_system(tmp_path, "Sys", lines, truth)
    (tmp_path / "formats.json").write_text(json.dumps({"Sys": "<Level> <Content>"}))
    by_template = evaluate_parsing(tmp_path)
    by_event = evaluate_parsing(tmp_path, truth="event_id")
    assert by_template.truth == "template" and by_event.truth == "event_id"
    assert by_template.grouping_accuracy == 1.0  # the miner merges the users: right by template
    assert by_event.grouping_accuracy == pytest.approx(2 / 8)  # only "disk full" is a true EventId group
    assert by_event.systems[0].templates_true == 3 and by_template.systems[0].templates_true == 2
    assert by_event.parsing_accuracy == by_template.parsing_accuracy == 1.0
    assert by_event.to_dict()["truth"] == "event_id"
    with pytest.raises(UsageError):
        evaluate_parsing(tmp_path, truth="event-id")


def test_true_groups_normalise_templates_or_keep_event_ids() -> None:
    rows = [
        {"LineId": "1", "EventId": "E1", "EventTemplate": "a  <*>"},
        {"LineId": "2", "EventId": "E2", "EventTemplate": "a <*> "},
    ]
    assert true_groups(rows) == {1: "a <*>", 2: "a <*>"}
    assert true_groups(rows, "event_id") == {1: "E1", 2: "E2"}
    with pytest.raises(UsageError):
        true_groups(rows, "cluster")
