"""Log formats match in linear time: no line, however hostile, makes the header split backtrack.

The guard is a timeout, not a timing assertion: every preset splits all the pathological lines
below in a few hundredths of a second here, while the lazy ``(.*?)`` fields formats used to
compile to took minutes on one 400-word line. A regression fails by timing out; the bound (60 s)
is generous, so a busy machine running the tests on every core with coverage never trips it.
"""

from __future__ import annotations

import itertools
import json

import pytest

from mlctl.core.errors import UsageError
from mlctl.logs.formats import MAX_LINE_CHARS, PRESETS, LogFormat

TEMPLATE_FORMAT = "<Date> <Time> <Level> <Component>: <Content>"  # the `logs` template's default
FORMATS = {**{name: name for name in PRESETS}, "logs-template": TEMPLATE_FORMAT}


def pathological_lines() -> dict[str, str]:
    words = " ".join(f"tok{i}" for i in range(10_000))
    return {
        "400 words, no colon": " ".join(f"tok{i}" for i in range(400)),
        "10k words": words,
        "1 MB of words": ("ab " * 350_000)[:1_000_000],
        "1 MB, no separator": "x" * 1_000_000,
        "a long run of spaces": "a" + " " * 200_000 + "b",
        "only opening brackets": "[" * 200_000,
        "brackets not followed by a space": "[" + "]x" * 100_000,
        "bracketed words": "[a] " * 50_000,
        "quotes": '" ' * 100_000,
        "colons not followed by a space": "a b c " + ":x" * 100_000,
        "colons": "a: " * 60_000,
        "pipes and dashes": "| - " * 50_000,
        "a near miss (3 KB WARN line)": "2026-01-01 12:00:00 WARN " + " ".join(f"w{i}" for i in range(600)),
        "an access-log near miss": '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "' + 'GET " ' * 20_000,
        "a syslog near miss": "<34>Oct 11 22:14:15 host " + "comp[1] " * 20_000,
        "JSON nested 100k deep": "[" * 100_000,
        "an object nested 100k deep": '{"a":' * 100_000,
        "a JSON-looking line": "{" + words,
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_preset_splits_pathological_lines_in_linear_time(name: str) -> None:
    fmt = LogFormat.resolve(FORMATS[name])
    for label, line in pathological_lines().items():
        parts = fmt.split(line)
        if parts is not None and fmt.kind == "regex" and fmt.content_last:
            assert len(parts[1]) >= len(line.strip()) - MAX_LINE_CHARS, label  # a long line's rest stays content


@pytest.mark.timeout(60)
def test_the_reported_line_is_unparsed_not_hung() -> None:
    fmt = LogFormat.compile(TEMPLATE_FORMAT)
    assert fmt.split(" ".join(f"tok{i}" for i in range(400))) is None
    realistic = "2026-01-01 12:00:00 WARN " + "disk usage is high on volume " * 110  # no "Component:"
    assert len(realistic) > 3000 and fmt.split(realistic) is None


def test_a_line_longer_than_the_cap_keeps_its_tail_as_content() -> None:
    fmt = LogFormat.compile(TEMPLATE_FORMAT)
    body = "payload " * (MAX_LINE_CHARS // 4)
    line = "2026-01-01 12:00:00 INFO app.Main: start " + body + "end"
    assert len(line) > MAX_LINE_CHARS
    headers, content = fmt.split(line)  # type: ignore[misc]
    assert headers == {"Date": "2026-01-01", "Time": "12:00:00", "Level": "INFO", "Component": "app.Main"}
    assert content == "start " + body + "end"
    raw = PRESETS["raw"].split("x" * 1_000_000)
    assert raw is not None and len(raw[1]) == 1_000_000
    # a format whose content is not last is matched on the whole line (its regex is linear too)
    url = "/" + "a" * 100_000
    access = PRESETS["access"].split(f'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET {url} HTTP/1.1" 200 5')
    assert access is not None and access[1] == f"GET {url} HTTP/1.1" and access[0]["Status"] == "200"


@pytest.mark.parametrize(("spec", "line", "headers", "content"), [
    # a field followed by whitespace and literal text may hold words, up to the first place the text follows
    (r"\[<Time>\] <Program> - <Content>", "[10.30 16:49:06] chrome.exe *64 - proxy.cse:5070 open - ok",
     {"Time": "10.30 16:49:06", "Program": "chrome.exe *64"}, "proxy.cse:5070 open - ok"),
    (r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>", "Dec 10 06:55:46 my host sshd[24200]: hi",
     {"Date": "Dec", "Day": "10", "Time": "06:55:46", "Component": "my host", "Pid": "24200"}, "hi"),
    # a field followed by ": " may hold a colon that is not followed by whitespace
    (TEMPLATE_FORMAT, "2026-01-01 12:00:00 INFO akka://sys/user:main: started: ok",
     {"Date": "2026-01-01", "Time": "12:00:00", "Level": "INFO", "Component": "akka://sys/user:main"}, "started: ok"),
    # a bracketed field holds spaces, and a ] not followed by what follows it
    (r"\[<Time>\] \[<Level>\] <Content>", "[Sun Dec 04 [x] 2005] [notice] ok",
     {"Time": "Sun Dec 04 [x] 2005", "Level": "notice"}, "ok"),
    # Linux: a component with spaces before an optional [PID]
    (r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
     "Jun 9 06:06:20 combo syslogd 1.4.1: restart.",
     {"Month": "Jun", "Date": "9", "Time": "06:06:20", "Level": "combo", "Component": "syslogd 1.4.1", "PID": ""},
     "restart."),
    # Zookeeper: several fields between literal separators
    (r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
     "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Note",
     {"Date": "2015-07-29", "Time": "17:41:44,747", "Level": "INFO", "Node": "QuorumPeer[myid=1]/0",
      "Component": "0:0:0:0:0:0:0:2181:FastLeaderElection", "Id": "774"}, "Note"),
])  # fmt: skip
def test_fields_end_where_the_lazy_fields_did(spec: str, line: str, headers: dict[str, str], content: str) -> None:
    assert LogFormat.compile(spec).split(line) == (headers, content)


@pytest.mark.parametrize("spec", ["<1abc> <Content>", "<my-field> <Content>", "<Dátum> <Content>"])
def test_a_placeholder_with_an_invalid_name_is_refused(spec: str) -> None:
    with pytest.raises(UsageError, match="not a valid field name") as err:
        LogFormat.compile(spec)
    assert err.value.hint


def test_an_escaped_angle_bracket_is_literal_and_an_empty_format_is_refused() -> None:
    fmt = LogFormat.compile(r"\<<Pri>> <Content>")
    assert fmt.split("<34> hello") == ({"Pri": "34"}, "hello")
    for spec in ("", "   "):
        with pytest.raises(UsageError, match="empty log format"):
            LogFormat.resolve(spec)


@pytest.mark.parametrize("name", ["jsonl", "docker", "k8s"])
def test_json_nested_too_deep_is_unparsed_not_a_crash(name: str) -> None:
    assert PRESETS[name].split("{" + '"a":[' * 50_000) is None
    assert PRESETS[name].split(json.dumps({"msg": "ok", "n": [[1]]}))[1] == "ok"  # type: ignore[index]


@pytest.mark.timeout(60)
def test_auto_detection_is_linear_and_reads_a_bounded_sample() -> None:
    from mlctl.logs.autoformat import SAMPLE_LINES, detect_format

    lines = pathological_lines()
    for label, line in lines.items():  # each hostile line alone, then as a whole log of it
        assert detect_format([line]).sampled == 1, label
        assert detect_format(itertools.repeat(line)).sampled == SAMPLE_LINES, label
    mixed = detect_format(itertools.cycle(lines.values()))  # an endless log is read only up to the sample
    assert mixed.sampled == SAMPLE_LINES
    assert detect_format(["[" * 2000 + " x"] * SAMPLE_LINES).sampled == SAMPLE_LINES  # nested, unclosed brackets
