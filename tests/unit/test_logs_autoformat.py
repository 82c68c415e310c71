"""``--log-format auto``: the header detected from the first lines, on synthetic logs of several shapes."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlctl.core.errors import UsageError
from mlctl.logs.autoformat import SAMPLE_LINES, detect_format, resolve_format, shape, tokens
from mlctl.logs.evaluate import evaluate_parsing
from mlctl.logs.formats import AUTO_FORMAT, LogFormat
from mlctl.logs.parse import parse_lines, stream_lines

MESSAGES = [
    "started worker {n}",
    "connection from 10.0.{n}.{m} closed",
    "Failed to open /var/data/f{n}.dat: permission denied",
    "user u{n} logged in",
    "GC pause {n} ms",
    "Received block blk_{n} of size {m}",
    "timeout after {n} s, retrying",
    "shutting down",
]
LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]


def synthetic(make: Callable[[random.Random], str], n: int = 300, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [make(rng) for _ in range(n)]


def msg(rng: random.Random) -> str:
    return rng.choice(MESSAGES).format(n=rng.randint(1, 999), m=rng.randint(1, 99999))


def clock(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


SHAPES: dict[str, tuple[Callable[[random.Random], str], str]] = {
    "syslog": (
        lambda r: (
            f"Dec {r.randint(1, 28)} {clock(r)} web-{r.randint(1, 3)} "
            f"{r.choice(['sshd', 'cron', 'kernel'])}[{r.randint(100, 9999)}]: {msg(r)}"
        ),
        "syslog",
    ),
    "ISO-8601 timestamp and level": (
        lambda r: f"2026-01-05T{clock(r)}.{r.randint(0, 999):03d}Z {r.choice(LEVELS)} {msg(r)}",
        "<Time> <Level> <Content>",
    ),
    "date, time, level, component:": (
        lambda r: (
            f"2026-01-05 {clock(r)},{r.randint(0, 999):03d} {r.choice(LEVELS)} "
            f"{r.choice(['app.Worker', 'db.Pool', 'web.Server'])}: {msg(r)}"
        ),
        "<Date> <Time> <Level> <Component>: <Content>",
    ),
    "Loghub-like: date, time, pid, level, component:": (
        lambda r: (
            f"260105 {r.randint(100000, 235959)} {r.randint(1, 9999)} {r.choice(LEVELS)} "
            f"dfs.{r.choice(['DataNode', 'FSNamesystem', 'DataNode$PacketResponder'])}: {msg(r)}"
        ),
        "<Id> <Id2> <Id3> <Level> <Component>: <Content>",
    ),
    "level, bracketed thread, logger - message": (
        lambda r: (
            f"2026-01-05 {clock(r)},123 {r.choice(LEVELS):5} [{r.choice(['main', 'pool-1-thread-2'])}] "
            f"com.acme.{r.choice(['Api', 'Db'])} - {msg(r)}"
        ),
        r"<Date> <Time> <Level> \[<Context>\] <Component> - <Content>",
    ),
    "bracketed time with spaces, program - message": (
        lambda r: f"[10.30 {clock(r)}] {r.choice(['chrome.exe', 'svchost.exe'])} - {msg(r)}",
        r"\[<Time>\] <Component> - <Content>",
    ),
    "apache error log": (
        lambda r: f"[Sun Dec 04 {clock(r)} 2005] [{r.choice(['error', 'notice'])}] {msg(r)}",
        "apache-error",
    ),
    "pipe-delimited": (
        lambda r: (
            f"20260105-{clock(r)}:{r.randint(0, 999)}|{r.choice(['Step_A', 'Step_B'])}|"
            f"{r.randint(30000000, 30009999)}|{msg(r)}"
        ),
        r"<Time>\|<Field>\|<Id>\|<Content>",
    ),
    "fixed-width padded level and component": (
        lambda r: f"2026-01-05 {clock(r)}, {r.choice(['Info', 'Warning']):<20}{r.choice(['CBS', 'CSI']):<7}{msg(r)}",
        "<Date> <Time>, <Level> <Component> <Content>",
    ),
    "logcat": (
        lambda r: (
            f"01-05 {clock(r)}.{r.randint(0, 999):03d} {r.randint(100, 9999):>5} {r.randint(100, 9999):>5} "
            f"{r.choice('DIWE')} {r.choice(['WindowManager', 'PowerManager'])}: {msg(r)}"
        ),
        "<Date> <Time> <Id> <Id2> <Level> <Component>: <Content>",
    ),
    "no header at all": (msg, "raw"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_header_of_each_shape_is_detected(name: str) -> None:
    make, expected = SHAPES[name]
    lines = synthetic(make)
    detection = detect_format(lines)
    assert detection.spec == expected
    assert detection.sampled == SAMPLE_LINES and detection.matched >= 0.9 * SAMPLE_LINES
    # the contents are the messages: no header token is left in a template
    records = list(parse_lines(lines, detection.format))
    assert all(r.parsed for r in records)
    first_words = {m.split()[0] for m in MESSAGES}
    assert {r.content.split()[0] for r in records} <= first_words


def test_a_syslog_line_loses_its_header_and_keeps_its_message() -> None:
    lines = synthetic(SHAPES["syslog"][0])
    records = list(parse_lines(lines, "auto"))
    assert {r.template for r in records} >= {"started worker <*>", "user <*> logged in"}
    assert records[0].headers["Month"] == "Dec" and records[0].headers["PID"]


@pytest.mark.parametrize(("lines", "expected"), [
    ([json.dumps({"ts": "2026-01-05T10:00:00Z", "level": "info", "msg": f"job {i} done"}) for i in range(50)],
     "jsonl"),
    ([json.dumps({"log": f"job {i} done\n", "stream": "stdout", "time": "2026-01-05T10:00:00Z"}) for i in range(50)],
     "docker"),
    ([f"2026-01-05T10:00:{i % 60:02d}.000000000Z stdout F job {i} done" for i in range(50)], "cri"),
    ([f"2026-01-05T10:00:{i % 60:02d}.0Z stderr F job {i} done" if i % 2 else
      json.dumps({"log": f"job {i} done", "stream": "stdout", "time": "2026-01-05T10:00:00Z"}) for i in range(50)],
     "k8s"),
])  # fmt: skip
def test_structured_lines_pick_their_preset(lines: list[str], expected: str) -> None:
    detection = detect_format(lines)
    assert (detection.spec, detection.how) == (expected, "structured")
    assert list(parse_lines(lines, "auto"))[0].content.startswith("job")


def test_a_header_most_lines_do_not_share_is_shortened_until_it_matches() -> None:
    # a quarter of the lines have no "Component:" after the level: the header stops at the level
    lines = [
        f"2026-01-05 10:00:{i % 60:02d} INFO " + ("app.Main: started" if i % 4 else f"plain message {i}")
        for i in range(100)
    ]
    detection = detect_format(lines)
    assert detection.spec == "<Date> <Time> <Level> <Content>" and detection.matched == 100


def test_indented_continuation_lines_do_not_hide_the_header() -> None:
    lines = []
    for i in range(60):
        lines.append(f"2026-01-05 10:00:{i % 60:02d},001 {'ERROR' if i % 3 == 0 else 'INFO'} [main] app.Job: run {i}")
        if i % 3 == 0:  # a stack trace after every error
            lines += [
                "java.lang.IllegalStateException: boom",
                "\tat app.Job.run(Job.java:42)",
                "\tat app.Main.main(Main.java:7)",
            ]
    detection = detect_format(lines)
    assert detection.spec == r"<Date> <Time> <Level> \[<Context>\] <Component>: <Content>"
    assert detection.continued == 60 and "60 continuation line(s) aside" in detection.describe()
    records = list(parse_lines(lines, "auto"))
    assert sum(not r.parsed for r in records) == 60  # the trace lines (kept, unparsed), as with a given format


def test_nothing_to_detect_from_is_raw() -> None:
    for lines in ([], ["", "   "], ["one line only with words"]):
        detection = detect_format(lines)
        assert detection.spec == "raw" and detection.how == "none"
    assert "no header found" in detect_format(["a b", "c d"]).describe()


def test_only_the_first_lines_are_read() -> None:
    def endless() -> Iterator[str]:
        for i in itertools.count():
            if i > SAMPLE_LINES + 50:
                raise AssertionError("read past the sample")
            yield "" if i % 10 == 0 else f"2026-01-05 10:00:00 INFO app: line {i}"

    detection = detect_format(endless())
    assert detection.sampled == SAMPLE_LINES and detection.spec == "<Date> <Time> <Level> <Component>: <Content>"


def test_the_detection_is_reported() -> None:
    lines = synthetic(SHAPES["date, time, level, component:"][0], n=20)
    detection = detect_format(lines)
    text = detection.describe()
    assert "detected '<Date> <Time> <Level> <Component>: <Content>'" in text and "20 of the first 20" in text
    assert detection.to_dict() == {
        "format": "<Date> <Time> <Level> <Component>: <Content>",
        "detected": True,
        "how": "inferred",
        "preset": None,
        "sampled": 20,
        "matched": 20,
        "continued": 0,
    }
    assert "preset syslog" in detect_format(synthetic(SHAPES["syslog"][0], n=20)).describe()
    fmt, found = resolve_format("auto", lines)
    assert found is not None and fmt.spec == detection.spec
    fmt, found = resolve_format("<Level> <Content>", lines)
    assert found is None and fmt.fields == ("Level",)


def test_auto_is_a_placeholder_until_detected() -> None:
    assert LogFormat.resolve("auto") is AUTO_FORMAT and LogFormat.resolve("AUTO") is AUTO_FORMAT
    with pytest.raises(UsageError, match="not been detected"):
        AUTO_FORMAT.split("2026-01-05 10:00:00 INFO x")


def test_stream_lines_detects_from_the_first_lines_then_streams() -> None:
    lines = [f"2026-01-05 10:00:{i % 60:02d} INFO app.Main: job {i} done" for i in range(SAMPLE_LINES + 20)]
    out = list(stream_lines(lines, "auto"))
    assert len(out) == len(lines) and out[0].headers["Component"] == "app.Main"
    assert out[-1].template == "job <*> done"


def test_tokens_and_shapes() -> None:
    toks = tokens("[Sun Dec 04 04:47:44 2005] [notice] a|b  c:  [unclosed")
    assert [t.core for t in toks] == ["[Sun Dec 04 04:47:44 2005]", "[notice]", "a", "|", "b", "c", "[unclosed"]
    assert [t.bracket for t in toks][:2] == [True, True] and toks[5].trail == ":" and toks[4].gap == "  "
    assert tokens("[QuorumPeer[myid=1]/0:2181@774] - x")[0].core == "[QuorumPeer[myid=1]/0:2181@774]"
    assert [shape(x) for x in ("Jun", "Mon", "E", "warning", "R02-M1-N0", "hello", "a=b")] == [
        "month", "weekday", "level", "level", "host", "word", "other",
    ]  # fmt: skip


def test_evaluate_parsing_can_detect_every_format(tmp_path: Path) -> None:
    lines, truth = [], []
    for i in range(40):
        if i % 2:
            lines.append(f"2026-01-05 10:00:{i:02d} INFO auth.Login: user {i * 7} logged in")
            truth.append(("E1", "user <*> logged in"))
        else:
            lines.append(f"2026-01-05 10:00:{i:02d} WARN disk.Monitor: disk {i} is full")
            truth.append(("E2", "disk <*> is full"))
    folder = tmp_path / "Sys"
    folder.mkdir()
    (folder / "Sys_2k.log").write_text("\n".join(lines) + "\n")
    rows = [f"{i},{e},{t}" for i, (e, t) in enumerate(truth, start=1)]
    (folder / "Sys_2k.log_structured_corrected.csv").write_text("LineId,EventId,EventTemplate\n" + "\n".join(rows))
    report = evaluate_parsing(tmp_path, log_format="auto")  # no formats.json needed
    system = report.systems[0]
    assert system.grouping_accuracy == 1.0 and system.unparsed == 0
    assert system.log_format == "<Date> <Time> <Level> <Component>: <Content>"
    raw = evaluate_parsing(tmp_path, log_format="raw")
    assert raw.systems[0].log_format == "raw"


def test_the_pipeline_detects_on_its_first_batch_with_lines_and_says_so(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlctl.core.config import load_config
    from mlctl.logs.pipeline import LogPipeline
    from mlctl.logs.record import LogRecord

    monkeypatch.chdir(project)
    pipe = LogPipeline(load_config(), use_model=False)  # no logs.log_format: auto
    assert pipe.format.kind == "auto" and pipe.format_report() == {"format": "auto", "detected": False}
    blank = pipe.process([LogRecord(1, "", source="t")], classify_lines=False)
    assert not blank[0].parsed and pipe.format.kind == "auto"  # nothing to detect from yet
    lines = synthetic(SHAPES["date, time, level, component:"][0], n=50)
    out = pipe.process([LogRecord(i, text, source="t") for i, text in enumerate(lines, 2)], classify_lines=False)
    assert all(r.parsed for r in out) and pipe.header_fields == ["Date", "Time", "Level", "Component"]
    assert pipe.format_report()["detected"] and pipe.format_report()["matched"] == 50
    assert "log format: detected '<Date> <Time> <Level> <Component>: <Content>'" in capsys.readouterr().err
    later = pipe.process([LogRecord(99, "no header here at all", source="t")], classify_lines=False)
    assert not later[0].parsed  # the format stays the one detected first
    given = LogPipeline(load_config(), log_format="syslog", use_model=False)
    assert given.format_report() == {"format": "syslog", "detected": False}
