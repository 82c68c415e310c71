from __future__ import annotations

import dataclasses
import io
import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from mlctl.core import output
from mlctl.core.errors import CheckFailed
from mlctl.core.output import OutputFormat, render, render_error, render_stream, to_data, ui


@dataclasses.dataclass
class Row:
    name: str
    score: float
    when: datetime
    path: Path


@pytest.fixture
def streams() -> tuple[io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    ui.stdout, ui.stderr = out, err
    return out, err


def test_to_data_converts_nested_objects() -> None:
    row = Row("a", float("nan"), datetime(2026, 1, 2, 3, 4, 5), Path("/x"))
    assert to_data({"rows": [row], "fmt": OutputFormat.json}) == {
        "rows": [{"name": "a", "score": None, "when": "2026-01-02T03:04:05", "path": "/x"}],
        "fmt": "json",
    }


def test_json_goes_to_stdout_only(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, err = streams
    render([{"a": 1}], fmt="json")
    assert json.loads(out.getvalue()) == [{"a": 1}]
    assert err.getvalue() == ""


def test_yaml_and_jsonl(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    render({"k": [1, 2]}, fmt="yaml")
    assert yaml.safe_load(out.getvalue()) == {"k": [1, 2]}
    out.seek(0)
    out.truncate()
    render([{"a": 1}, {"a": 2}], fmt="jsonl")
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{"a": 1}, {"a": 2}]


def test_render_stream_writes_as_it_goes(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    assert render_stream(iter([{"i": 1}, {"i": 2}, {"i": 3}]), fmt="jsonl") == 3
    assert len(out.getvalue().splitlines()) == 3
    out.seek(0)
    out.truncate()
    assert render_stream(iter([{"i": 1}]), fmt="json") == 1
    assert json.loads(out.getvalue()) == [{"i": 1}]


def test_table_of_records_and_of_mapping(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    render([{"name": "a", "ok": True, "n": None}], fmt="table", title="things")
    text = out.getvalue()
    assert "things" in text and "name" in text and "yes" in text and "-" in text
    out.seek(0)
    out.truncate()
    render({"alpha": 1.234567}, fmt="table")
    assert "alpha" in out.getvalue() and "1.235" in out.getvalue()


def test_table_escapes_markup(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    render([{"v": "[bold]x[/bold]"}], fmt="table")
    assert "[bold]x[/bold]" in out.getvalue()


def test_empty_list_table_says_none(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, err = streams
    render([], fmt="table", title="runs")
    assert out.getvalue() == ""
    assert "runs: none" in err.getvalue()


def test_scalar_table(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    render(42, fmt="table")
    assert out.getvalue() == "42\n"


def test_error_one_line_with_hint(streams: tuple[io.StringIO, io.StringIO]) -> None:
    _, err = streams
    render_error(CheckFailed("f1 0.7 below 0.8", hint="lower the gate"), fmt="table")
    assert err.getvalue() == "Error: f1 0.7 below 0.8\nHint: lower the gate\n"


def test_error_json_payload(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, err = streams
    render_error(CheckFailed("bad"), fmt="json")
    assert out.getvalue() == ""
    assert json.loads(err.getvalue()) == {"error": {"type": "CheckFailed", "message": "bad", "hint": None}}
    err.seek(0)
    err.truncate()
    render_error(ValueError("plain"), fmt="yaml")
    assert yaml.safe_load(err.getvalue())["error"]["type"] == "ValueError"


def test_quiet_and_verbose(streams: tuple[io.StringIO, io.StringIO]) -> None:
    _, err = streams
    ui.verbosity = -1
    output.message("hidden")
    ui.verbosity = 1
    output.message("shown")
    output.log("detail")
    ui.verbosity = 0
    output.log("not shown")
    assert err.getvalue() == "shown\ndetail\n"


def test_progress_is_a_noop_off_a_tty(streams: tuple[io.StringIO, io.StringIO]) -> None:
    _, err = streams
    assert not output.progress_enabled()
    with output.progress("work", total=3) as task:
        task.advance()
        task.update(description="x")
    assert err.getvalue() == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    ui.stderr = _Tty()
    assert output.progress_enabled()
    with output.progress("work", total=2) as task:
        task.advance()
        task.update(completed=2)
    ui.stderr = None


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_respected(monkeypatch: pytest.MonkeyPatch, no_color: bool) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    out = _Tty()
    ui.stdout = out
    render([{"a": "b"}], fmt="table")
    has_color = "36m" in out.getvalue()  # the cyan header
    assert has_color is not no_color


class _Scores(output.Result):
    """A result whose rows are produced lazily; ``produced`` counts what was pulled."""

    columns = ("ts", "score")
    title = "scores"

    def __init__(self, n: int) -> None:
        self.n = n
        self.produced = 0

    def document(self) -> dict[str, object]:
        return {"count": self.n, "rows": list(self.rows())}

    def rows(self):  # noqa: ANN201 - a generator
        for i in range(self.n):
            self.produced += 1
            yield {"ts": i, "score": i / 2, "extra": "left out of csv"}


def test_a_result_gives_one_document_in_json_and_yaml(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    render(_Scores(2), fmt="json")
    doc = json.loads(out.getvalue())
    out.seek(0)
    out.truncate()
    render(_Scores(2), fmt="yaml")
    assert yaml.safe_load(out.getvalue()) == doc == {"count": 2, "rows": [
        {"ts": 0, "score": 0.0, "extra": "left out of csv"}, {"ts": 1, "score": 0.5, "extra": "left out of csv"}]}


def test_a_result_streams_its_rows_to_csv_and_jsonl(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    seen_while_writing: list[int] = []
    result = _Scores(3)

    class Spy(io.StringIO):
        def write(self, text: str) -> int:
            seen_while_writing.append(result.produced)
            return super().write(text)

    ui.stdout = spy = Spy()
    render(result, fmt="csv")
    assert spy.getvalue().splitlines() == ["ts,score", "0,0.0", "1,0.5", "2,1.0"]
    assert seen_while_writing == [0, 1, 2, 3]  # the header first, then each row as it is produced
    ui.stdout = out
    render(_Scores(2), fmt="jsonl")
    assert [json.loads(line)["ts"] for line in out.getvalue().splitlines()] == [0, 1]


def test_a_result_renders_its_table(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, _ = streams
    render(_Scores(2), fmt="table")
    text = out.getvalue()
    assert "scores" in text and "extra" not in text and "0.5" in text


def test_csv_rows_without_columns_take_the_first_rows_keys() -> None:
    buf = io.StringIO()
    n = output.write_csv_rows(buf, iter([{"a": 1, "b": None}, {"b": True, "c": 3}]))
    assert n == 2 and buf.getvalue().splitlines() == ["a,b", "1,", ",true"]
    assert output.write_csv_rows(buf := io.StringIO(), iter([])) == 0 and buf.getvalue() == ""


class _Deployed(output.Result):
    """A result whose table view has several blocks (a table, YAML, verbatim text) and a hint."""

    def document(self) -> dict[str, object]:
        return {"name": "web", "manifest": {"kind": "Service"}, "log": "started\n"}

    def tables(self) -> list[output.Table]:
        return [output.Table([{"step": 1, "action": "start web"}], title="plan"),
                output.Table({"kind": "Service"}, fmt="yaml"), output.Table("started\n", fmt="text")]

    def notes(self) -> list[str]:
        return ["Next: mlctl status"]


def test_a_result_renders_several_blocks_and_notes_only_in_tables(streams: tuple[io.StringIO, io.StringIO]) -> None:
    out, err = streams
    render(_Deployed(), fmt="table")
    text = out.getvalue()
    assert "plan" in text and "start web" in text and "kind: Service\n" in text and text.endswith("started\n")
    assert err.getvalue() == "Next: mlctl status\n"
    out.seek(0)
    out.truncate()
    err.seek(0)
    err.truncate()
    render(_Deployed(), fmt="json")
    assert json.loads(out.getvalue())["manifest"] == {"kind": "Service"} and err.getvalue() == ""


def test_a_result_without_a_table_prints_only_its_notes(streams: tuple[io.StringIO, io.StringIO]) -> None:
    from mlctl.core.config_view import ConfigChange

    out, err = streams
    render(ConfigChange(Path("mlctl.yaml"), "deploy.port", 9000, dry_run=False), fmt="table")
    assert out.getvalue() == "" and err.getvalue() == "mlctl.yaml: deploy.port = 9000\n"
    render(ConfigChange(Path("mlctl.yaml"), "deploy.port", 9000, dry_run=False), fmt="yaml")
    assert yaml.safe_load(out.getvalue()) == {"file": "mlctl.yaml", "key": "deploy.port", "value": 9000,
                                              "dry_run": False}
