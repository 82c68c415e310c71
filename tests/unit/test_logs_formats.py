"""Log formats: Loghub-style format strings, presets, and reading bytes into lines."""

from __future__ import annotations

import io
import json

import pytest

from mlctl.core.errors import NotFound, UsageError
from mlctl.logs.formats import PRESETS, LogFormat, lines_from_text, read_lines


def test_compile_splits_headers_and_content_with_flexible_spaces() -> None:
    fmt = LogFormat.compile("<Date> <Time> <Level> <Component>: <Content>")
    assert fmt.fields == ("Date", "Time", "Level", "Component")
    headers, content = fmt.split("081109   203615 INFO\tdfs.DataNode: Receiving block blk_1 src: /10.0.0.1")
    assert headers == {"Date": "081109", "Time": "203615", "Level": "INFO", "Component": "dfs.DataNode"}
    assert content == "Receiving block blk_1 src: /10.0.0.1"


def test_loghub_escapes_and_optional_group() -> None:
    fmt = LogFormat.compile(r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>")
    with_pid = fmt.split("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown")
    assert with_pid == (
        {
            "Month": "Jun",
            "Date": "14",
            "Time": "15:16:01",
            "Level": "combo",
            "Component": "sshd(pam_unix)",
            "PID": "19939",
        },
        "check pass; user unknown",
    )
    without = fmt.split("Jun 14 15:16:01 combo kernel: Linux version 2.6")
    assert without is not None and without[0]["PID"] == "" and without[0]["Component"] == "kernel"
    apache = LogFormat.compile(r"\[<Time>\] \[<Level>\] <Content>")
    assert apache.split("[Sun Dec 04 04:47:44 2005] [notice] ok") == (
        {"Time": "Sun Dec 04 04:47:44 2005", "Level": "notice"},
        "ok",
    )


def test_non_matching_and_empty_lines_give_none() -> None:
    fmt = LogFormat.compile(r"\[<Time>\] <Content>")
    assert fmt.split("no brackets here") is None
    assert fmt.split("") is None
    assert fmt.split("   ") is None


@pytest.mark.parametrize(
    "spec",
    ["", "<Date> <Time>", "<Date> <Date> <Content>", "<Date> [unclosed <Content>"],
)
def test_bad_format_strings_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError) as err:
        LogFormat.compile(spec)
    assert err.value.hint


def test_resolve_presets_and_unknown_name() -> None:
    assert LogFormat.resolve("syslog") is PRESETS["syslog"]
    assert LogFormat.resolve(None).split("anything at all") == ({}, "anything at all")
    with pytest.raises(NotFound):
        LogFormat.resolve("no-such-preset")


def test_syslog_apache_and_access_presets() -> None:
    h, c = PRESETS["syslog"].split("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick")
    assert (h["Host"], h["Component"], h["PID"], c) == ("mymachine", "su", "230", "'su root' failed for lonvick")
    h, c = PRESETS["apache-error"].split(
        "[Wed Oct 11 14:32:52.123 2000] [core:error] [pid 35708:tid 4328] [client 72.15.99.187] File does not exist"
    )
    assert (h["Module"], h["Level"], h["PID"], h["Client"], c) == (
        "core",
        "error",
        "35708",
        "72.15.99.187",
        "File does not exist",
    )
    h, c = PRESETS["access"].split(
        '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08"'
    )
    assert (h["Client"], h["User"], h["Status"], h["Size"], h["UserAgent"], c) == (
        "127.0.0.1",
        "frank",
        "200",
        "2326",
        "Mozilla/4.08",
        "GET /a.gif HTTP/1.0",
    )


def test_jsonl_docker_and_cri_presets() -> None:
    h, c = PRESETS["jsonl"].split(json.dumps({"level": "warn", "msg": "disk 91% full", "n": 3, "ok": True}))
    assert h == {"level": "warn", "n": "3", "ok": "true"} and c == "disk 91% full"
    assert PRESETS["jsonl"].split('{"level": "warn"}') is None  # no message key
    assert PRESETS["jsonl"].split("[1, 2]") is None
    docker = json.dumps({"log": "started\n", "stream": "stdout", "time": "2024-01-01T00:00:00Z"})
    assert PRESETS["k8s"].split(docker) == ({"Stream": "stdout", "Time": "2024-01-01T00:00:00Z"}, "started")
    cri = "2024-01-01T00:00:00.1Z stderr F connection refused"
    assert PRESETS["k8s"].split(cri) == (
        {"Time": "2024-01-01T00:00:00.1Z", "Stream": "stderr", "Flag": "F"},
        "connection refused",
    )


def test_read_lines_decodes_invalid_utf8_keeps_empty_lines_and_strips_newlines(tmp_path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"first\r\n\n\xff\xfe bad \x00 bytes\nlast")
    assert list(read_lines(path)) == [(1, "first"), (2, ""), (3, "\ufffd\ufffd bad \x00 bytes"), (4, "last")]
    assert list(read_lines(io.BytesIO(b"x\ny\n"))) == [(1, "x"), (2, "y")]
    assert list(read_lines(io.StringIO("text\n"))) == [(1, "text")]
    assert list(lines_from_text("a\nb")) == [(1, "a"), (2, "b")]


def test_read_lines_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(NotFound):
        list(read_lines(tmp_path / "nope.log"))
    with pytest.raises(UsageError):
        list(read_lines(tmp_path))


def test_one_megabyte_line_is_read_whole(tmp_path) -> None:
    big = "x" * 1_000_000
    path = tmp_path / "big.log"
    path.write_text(f"a\n{big}\nb\n")
    lines = list(read_lines(path))
    assert [n for n, _ in lines] == [1, 2, 3] and len(lines[1][1]) == 1_000_000
