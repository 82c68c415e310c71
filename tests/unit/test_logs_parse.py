"""parse_lines / parse_file and the parse CSV contract, including bad input."""

from __future__ import annotations

import csv
import io

from mlctl.logs.miner import TemplateMiner, event_id_for
from mlctl.logs.parse import csv_header, csv_text, parse_file, parse_lines, rows_for_csv, stream_lines
from mlctl.logs.record import UNPARSED

FMT = "<Date> <Time> <Level> <Component>: <Content>"
LOG = (
    b"081109 203615 INFO dfs.DataNode: PacketResponder 1 for block blk_38865 terminating\n"
    b"081109 203807 INFO dfs.DataNode: PacketResponder 0 for block blk_-69522 terminating\n"
    b"this line does not match\n"
    b"\n"
    b"081109 204005 WARN dfs.FSNamesystem: bad \xff\xfe bytes\n"
)


def test_csv_contract_exact_header_and_rows(tmp_path) -> None:
    path = tmp_path / "hdfs.log"
    path.write_bytes(LOG)
    records = list(parse_file(path, FMT))
    text = csv_text(records, ["Date", "Time", "Level", "Component"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["LineId", "Date", "Time", "Level", "Component", "EventId", "EventTemplate", "ParameterList"]
    template = "PacketResponder <*> for block <*> terminating"
    assert rows[1] == [
        "1",
        "081109",
        "203615",
        "INFO",
        "dfs.DataNode",
        event_id_for(template),
        template,
        "['1', 'blk_38865']",
    ]
    assert rows[2][6:] == [template, "['0', 'blk_-69522']"]
    assert rows[3] == ["3", "", "", "", "", UNPARSED, "", "[]"]
    assert rows[4] == ["4", "", "", "", "", UNPARSED, "", "[]"]
    assert rows[5][1:5] == ["081109", "204005", "WARN", "dfs.FSNamesystem"]
    assert rows[5][6] == "bad \ufffd\ufffd bytes"
    assert len(rows) == 6


def test_every_line_gives_one_record_none_dropped() -> None:
    lines = ["", "   ", "\x00\x01\x02 binary", "2024 x INFO a: ok", "2024 x INFO a: " + "y" * 1_000_000]
    records = list(parse_lines(lines, "<Date> <Time> <Level> <Component>: <Content>", source="t.log"))
    assert [r.line_id for r in records] == [1, 2, 3, 4, 5]
    assert [r.parsed for r in records] == [False, False, False, True, True]
    assert all(r.event_id == UNPARSED and r.template is None for r in records[:3])
    assert records[2].raw == "\x00\x01\x02 binary"
    assert records[4].template == "<*>" and len(records[4].params[0]) == 1_000_000
    assert records[3].source == "t.log" and records[3].doc_id != records[4].doc_id


def test_numbered_pairs_and_miner_reuse() -> None:
    miner = TemplateMiner()
    records = list(parse_lines([(10, "user a1 logged in"), (11, "user b2 logged in")], None, miner=miner))
    assert [r.line_id for r in records] == [10, 11]
    assert records[0].template == "user <*> logged in" and records[1].params == ["b2"]
    assert len(miner) == 1


def test_stream_lines_is_online() -> None:
    out = stream_lines(["job 1 done", "job 2 done", "garbage"], "raw")
    first = next(out)
    assert first.template == "job <*> done" and first.params == ["1"]
    assert [r.parsed for r in out] == [True, True]  # "garbage" matches the raw format


def test_rows_for_csv_headers_and_timestamp() -> None:
    records = list(parse_lines(["[Sun Dec 04 2005] [error] state 6"], r"\[<Time>\] \[<Level>\] <Content>"))
    assert records[0].timestamp == "Sun Dec 04 2005"
    row = next(rows_for_csv(records, ["Time", "Level"]))
    assert list(row) == csv_header(["Time", "Level"])
    assert row["ParameterList"] == "['6']"


def test_repeated_lines_share_a_match_but_not_a_params_list() -> None:
    lines = ["job 7 done", "job 8 done", "job 7 done"]
    records = list(parse_lines(lines, None))
    assert records[0].params == records[2].params == ["7"]
    assert records[0].event_id == records[1].event_id == records[2].event_id
    records[0].params.append("changed")
    assert records[2].params == ["7"]
