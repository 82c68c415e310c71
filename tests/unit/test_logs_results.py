"""``classify-logs`` results: rows written as they are produced, and the same output as the record path."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlctl.core import output
from mlctl.core.config import load_config
from mlctl.core.output import render, ui
from mlctl.logs import formats
from mlctl.logs.formats import PRESETS, LogFormat, lines_from_text, read_lines
from mlctl.logs.miner import TemplateMiner
from mlctl.logs.parse import csv_header, csv_text, rows_for_csv
from mlctl.logs.pipeline import LogPipeline, classify_input, read_input, read_records
from mlctl.logs.record import LogRecord, make_doc_id

FMT = "<Date> <Time> <Level> <Component>: <Content>"


def _log(n: int = 300) -> str:
    out = []
    for i in range(n):
        message = [
            f"PacketResponder {i % 3} for block blk_{1000 + i} terminating",
            f"Received block blk_{i} of size {i * 7} from /10.0.0.{i % 250}",
            f"Failed password for invalid user u{i % 5} from 10.1.{i % 9}.{i % 200} port {4000 + i} ssh2",
            "Verification succeeded for blk_7",
        ][i % 4]
        out.append(f"2026-11-01 12:{i % 60:02d}:00 {'WARN' if i % 7 == 0 else 'INFO'} dfs.DataNode: {message}")
    out[10] = "this line does not match the format"
    out[20] = ""
    return "\n".join(out) + "\n"


@pytest.fixture
def streams(isolated_env: Path) -> Iterator[io.StringIO]:
    saved = (ui.stdout, ui.stderr, ui.format)
    ui.stdout, ui.stderr = io.StringIO(), io.StringIO()
    yield ui.stdout
    ui.stdout, ui.stderr, ui.format = saved


def _pipeline(log_format: str | None = FMT) -> LogPipeline:
    return LogPipeline(load_config(), log_format=log_format, use_model=False)


def _expected(text: str, log_format: str | None = FMT) -> tuple[list[LogRecord], LogPipeline]:
    """The record path (split, mine, a record per line), which the command used before results."""
    pipe = _pipeline(log_format)
    records = pipe.process([LogRecord(n, line) for n, line in lines_from_text(text)], classify_lines=False)
    return records, pipe


def _rendered(result: output.Result, fmt: str) -> str:
    ui.stdout = io.StringIO()
    render(result, fmt=fmt)
    return ui.stdout.getvalue()


@pytest.mark.parametrize("log_format", [FMT, "auto", "raw"])
def test_parse_result_gives_the_record_paths_output_in_every_format(streams: io.StringIO, log_format: str) -> None:
    text = _log()
    records, old = _expected(text, log_format)
    result = _pipeline(log_format).parse(lines_from_text(text), save_templates=False)
    fields = old.header_fields
    assert result.columns == tuple(csv_header(fields))
    assert _rendered(result, "csv") == csv_text(records, fields)
    rows = list(rows_for_csv(records, fields))
    assert [json.loads(line) for line in _rendered(result, "jsonl").splitlines()] == rows
    doc = json.loads(_rendered(result, "json"))
    assert list(doc) == ["lines", "unparsed", "templates", "rows", "log_format"]
    assert doc["rows"] == rows and doc["lines"] == len(records) == 300
    assert doc["unparsed"] == sum(not r.parsed for r in records) >= 1
    counts: dict[tuple[str, str], int] = {}
    for r in records:
        if r.parsed:
            counts[r.event_id, r.template] = counts.get((r.event_id, r.template), 0) + 1  # type: ignore[index]
    assert doc["templates"] == [{"EventId": e, "count": n, "EventTemplate": t}
                                for (e, t), n in sorted(counts.items(), key=lambda kv: -kv[1])]  # fmt: skip
    assert yaml.safe_load(_rendered(result, "yaml")) == doc
    assert doc["log_format"] == old.format_report()
    table = _rendered(result, "table")
    assert f"300 lines, {doc['unparsed']} unparsed" in table and "count" in table


def test_parse_rows_are_written_as_they_are_produced(streams: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    pulled: list[int] = []
    text = _log(200)

    def lines() -> Iterator[tuple[int, str]]:  # a generator input: read once, never as a list by the caller
        for item in lines_from_text(text):
            pulled.append(item[0])
            yield item

    result = _pipeline().parse(lines(), save_templates=False)
    assert len(pulled) == 200  # mining needs the whole batch before a template is final
    worked: list[int] = []
    real_params = result.miner.params

    def params(content: str, cid: int) -> list[str]:
        worked.append(cid)
        return real_params(content, cid)

    monkeypatch.setattr(result.miner, "params", params)
    seen_while_writing: list[int] = []

    class Spy(io.StringIO):
        def write(self, text: str) -> int:
            seen_while_writing.append(len(worked))
            return super().write(text)

    ui.stdout = spy = Spy()
    render(result, fmt="csv")
    assert len(spy.getvalue().splitlines()) == 201
    # the header before any row's parameters were worked out, then each row right after its own
    assert seen_while_writing[0] == 0 and seen_while_writing[1] == 1
    assert seen_while_writing == sorted(seen_while_writing) and seen_while_writing[-1] == len(worked)
    assert len(set(seen_while_writing)) > 100


def test_parse_warns_about_unparsed_lines_and_saves_the_model(streams: io.StringIO, tmp_path: Path) -> None:
    pipe = LogPipeline(load_config(), log_format=FMT, use_model=False, templates=tmp_path / "model.json")
    result = pipe.parse(lines_from_text(_log(50)))
    assert result.unparsed == 2 and (tmp_path / "model.json").is_file()
    assert "warning: 2 of 50 line(s) did not match the log format" in ui.stderr.getvalue()  # type: ignore[union-attr]
    assert len(TemplateMiner.load(tmp_path / "model.json")) == len(pipe.miner)


def test_classify_result_rows_csv_and_document(streams: io.StringIO, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text(_log(80))
    pipe = _pipeline()
    result = classify_input(pipe, read_records(str(path), defer_id=True), save_templates=False)
    rows = [json.loads(line) for line in _rendered(result, "jsonl").splitlines()]
    assert len(rows) == 80 and list(rows[0]) == list(result.columns)
    parsed = list(csv.DictReader(io.StringIO(_rendered(result, "csv"))))
    assert [int(r["LineId"]) for r in parsed] == [r["LineId"] for r in rows]
    doc = json.loads(_rendered(result, "json"))
    assert list(doc) == ["lines", "classes", "records", "log_format"] and doc["records"] == rows
    assert all(not r.doc_id for r in result.records)  # nothing went to a sink: no id was computed
    alerts = classify_input(_pipeline(), read_records(str(path)), alerts_only=True, save_templates=False)
    assert all(r["class"] != "normal" for r in alerts.rows())
    assert all(r.doc_id == make_doc_id(str(path), r.line_id, r.raw) for r in alerts.records)


def test_a_record_computes_its_id_when_asked_if_deferred() -> None:
    eager, lazy = LogRecord(3, "boot", source="a.log"), LogRecord(3, "boot", source="a.log", defer_id=True)
    assert lazy.doc_id == "" and lazy.ensure_doc_id() == eager.doc_id == lazy.doc_id
    assert "defer_id" not in lazy.to_dict() and lazy.to_dict() == eager.to_dict()


def test_file_blocks_read_as_line_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    cases = [b"", b"a", b"a\n", b"a\r\n", b"a\r", b"\n\n", b"x\r\r\n", b"a\r\nb\rc\n\xff\xfe\n\xe2\x82\n\xe2\x82"]
    cases += [bytes(rng.choice(b"ab \n\r\xff\xe2\x82\xac") for _ in range(rng.randint(0, 80))) for _ in range(200)]
    path = tmp_path / "x.log"
    for block in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(formats, "_BLOCK", block)
        for data in cases:
            path.write_bytes(data)
            assert list(read_lines(path)) == list(read_lines(io.BytesIO(data))), (block, data)


@pytest.mark.parametrize("spec", [FMT, *sorted(set(PRESETS) - {"raw"}), r"<Date> (\[<PID>\])?<Level>: <Content>"])
def test_the_batch_splitter_splits_as_split(spec: str) -> None:
    fmt = LogFormat.resolve(spec)
    lines = [line for _, line in lines_from_text(_log(40))]
    lines += ["", "   ", '{"message": "hi", "level": "info", "n": 3}', '{"log": "x\\n", "stream": "stdout", '
              '"time": "t"}', "2026-11-01T12:00:00Z stdout F hello", "<13>Nov  1 12:00:00 host app[12]: up",
              "[Sun Nov 01 12:00:00 2026] [error] [pid 3] boom", '1.2.3.4 - - [01/Nov/2026] "GET /" 200 5',
              "2026 [7]INFO: x", "2026 INFO: y  ", "  a " + "x" * (formats.MAX_LINE_CHARS + 10)]  # fmt: skip
    split = fmt.splitter()
    for line in lines:
        parts = fmt.split(line)
        expected = None if parts is None else (tuple(parts[0].get(f, "") for f in fmt.fields), parts[1])
        assert split(line) == expected, line[:80]


def test_read_input_refuses_a_missing_file_at_once(isolated_env: Path) -> None:
    from mlctl.core.errors import NotFound, UsageError

    with pytest.raises(NotFound):
        read_input("missing.log")
    with pytest.raises(UsageError):
        read_input(str(isolated_env))


def test_parse_csv_quotes_header_values_as_the_csv_writer_does(streams: io.StringIO) -> None:
    text = ('WARN a,b: disk 1 full, again\nINFO x"y: said "hi" 2\nINFO c\rd: z 3\nINFO ok: [\'p\', "q"] 4\n'
            "INFO : empty component 5\nnot matching\n")  # fmt: skip
    spec = "<Level> <Component>: <Content>"
    records, old = _expected(text, spec)
    result = _pipeline(spec).parse(lines_from_text(text), save_templates=False)
    assert _rendered(result, "csv") == csv_text(records, old.header_fields)
    lines = _rendered(result, "csv").split("\n")
    assert lines[1] == '1,WARN,"a,b",E' + lines[1].split(",E", 1)[1] and lines[2].startswith('2,INFO,"x""y",')
