"""The one renderer: turns plain result data into a table, JSON, YAML or JSONL.

Commands never print. They hand a result (a dataclass, a pydantic model, a dict or a
list of those) to :func:`render`; progress and log lines go to stderr through
:func:`progress` and :func:`log`. Under ``json``/``yaml``/``jsonl`` stdout holds only
the document; errors go to stderr as ``{"error": {"type", "message", "hint"}}``.

Rich is imported only when a table or a progress bar is actually drawn, so light
commands start fast.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import PurePath
from typing import IO, Any, Protocol

from mlctl.core.errors import MlctlError


class OutputFormat(enum.StrEnum):
    """Formats every command accepts with ``-o/--output``."""

    table = "table"
    json = "json"
    yaml = "yaml"
    jsonl = "jsonl"
    csv = "csv"


class _Settings:
    """Process-wide UI settings, set once by the CLI's shared options."""

    def __init__(self) -> None:
        self.format = OutputFormat.table
        self.verbosity = 0  # -1 quiet, 0 normal, 1+ verbose
        self.wide = False  # tables: every column, no cell cut short (``--wide``)
        self.stdout: IO[str] | None = None
        self.stderr: IO[str] | None = None

    @property
    def out(self) -> IO[str]:
        return self.stdout or sys.stdout

    @property
    def err(self) -> IO[str]:
        return self.stderr or sys.stderr


ui = _Settings()


class TableView(Protocol):
    """A result that knows how to lay itself out as one or more tables."""

    def table_rows(self) -> Sequence[Mapping[str, Any]]: ...  # pragma: no cover - protocol


@dataclasses.dataclass
class Table:
    """One block of a result's table view (see :meth:`Result.tables`).

    ``data`` is a mapping (a key/value table), a list of mappings (one row each) or a scalar;
    ``fmt="yaml"`` writes it as YAML instead (a manifest in a plan), ``fmt="text"`` writes the
    string as it is (logs, rules).
    """

    data: Any
    title: str | None = None
    columns: Sequence[str] | None = None
    wide_columns: Sequence[str] = ()
    fit: bool = False
    fmt: str | None = None


class Result:
    """What a library call returns for a command to render: one document, and rows.

    * :meth:`document` -- the JSON/YAML document, plain JSON-able data. It is the command's
      contract with scripts: the same shape in ``json`` and ``yaml`` whatever the input, pinned by
      a schema under ``docs/schemas/``.
    * :meth:`rows` -- the records for ``csv`` and ``jsonl``, plain JSON-able mappings, produced
      lazily: :func:`render` writes each one as it comes (a generator over a large input never
      sits in memory, and no generic conversion runs over it).
    * :meth:`table` -- what a table shows (default: the rows; a mapping renders as key/value);
      ``columns``, ``wide_columns``, ``title`` and ``fit`` lay it out (see :func:`render`).

    Commands call the library and hand the result to :func:`render`; they do not branch on the
    output format.
    """

    #: column order for csv and tables (None: the first row's keys, in order)
    columns: Sequence[str] | None = None
    wide_columns: Sequence[str] = ()
    title: str | None = None
    fit: bool = False

    def document(self) -> Any:
        raise NotImplementedError  # pragma: no cover - every result defines its document

    def rows(self) -> Iterable[Mapping[str, Any]]:
        doc = self.document()
        return doc if isinstance(doc, list) else [doc]

    def table(self) -> Any:
        return list(self.rows())

    def csv_rows(self) -> Iterable[Mapping[str, Any] | tuple[Any, ...] | str]:
        """The rows for ``csv`` (default: :meth:`rows`). A tuple is a row of plain cells in
        ``columns`` order (str, int, float) and a str a CSV line already encoded (with its newline),
        each written as it is: the fast paths for large outputs."""
        return self.rows()

    def tables(self) -> Iterable[Table]:
        """The blocks of the table view, in order (default: :meth:`table` with the class's layout);
        a result with several tables, or none, overrides it."""
        return [Table(self.table(), self.title, self.columns, self.wide_columns, self.fit)]

    def notes(self) -> Iterable[str]:
        """Human lines for stderr after the table view (hints, next steps); never in the document."""
        return ()


def to_data(obj: Any) -> Any:
    """Plain JSON-able data from dataclasses, pydantic models, enums, paths and dates.

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class P:
    ...     x: int
    >>> to_data([P(1), {"k": P(2)}])
    [{'x': 1}, {'k': {'x': 2}}]
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump") and callable(obj.model_dump):
        return to_data(obj.model_dump(mode="json"))
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_data(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def _dump_json(data: Any, *, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=False, sort_keys=False)


def _dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = ui.err if stderr else ui.out
    return Console(file=stream, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False,
                   soft_wrap=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return _dump_json(value, indent=None)
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None, title: str | None,
           wide_columns: Sequence[str] = (), width: int | None = None, fit: bool = False) -> Any:
    """A Rich table of ``rows``.

    By default long cells wrap inside their column. With ``fit`` (a command that offers
    ``--wide``) cells never wrap: when the table is wider than ``width`` the longest columns give way first
    (cut short with an ellipsis, never below 8 characters) while short ones (names, states,
    versions) keep their width, so a row stays one line at 80 columns. ``wide_columns`` are
    shown, and nothing is cut, only with ``--wide`` (as ``kubectl -o wide``).
    """
    from rich.markup import escape
    from rich.table import Table

    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    if ui.wide:
        cols += [c for c in wide_columns if c not in cols]
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    headers = [c.replace("_", " ") for c in cols]
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    table = Table(title=title, title_justify="left", header_style="bold cyan", box=_box())
    if not fit:
        for header in headers:
            table.add_column(header, overflow="fold")
    else:
        limits = natural if ui.wide or width is None else fit_widths(natural, width - _OVERHEAD * len(cols) - 1)
        for header, limit in zip(headers, limits, strict=True):
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=limit)
    for r in cells:
        table.add_row(*(escape(c) for c in r))
    return table


_OVERHEAD = 3  # per column in the table's box: one space of padding each side and a separator


def fit_widths(natural: Sequence[int], budget: int, *, keep: int = 16, floor: int = 8) -> list[int]:
    """Column widths that fit ``budget``: columns up to ``keep`` wide stay whole; longer ones are
    capped at one common width (never below ``floor``), the largest that fits.

    >>> fit_widths([10, 40, 30], 60)
    [10, 25, 25]
    >>> fit_widths([10, 12], 60)
    [10, 12]
    """
    if sum(natural) <= budget:
        return list(natural)
    fixed = sum(w for w in natural if w <= keep)
    long = [w for w in natural if w > keep]
    cap = max(w for w in natural)
    while cap > floor and fixed + sum(min(w, cap) for w in long) > budget:
        cap -= 1
    cap = max(cap, floor)
    return [w if w <= keep else min(w, cap) for w in natural]


def _box() -> Any:
    from rich import box

    return box.SIMPLE_HEAD


def render(
    result: Any,
    *,
    fmt: OutputFormat | str | None = None,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    table_data: Any = None,
    wide_columns: Sequence[str] = (),
    fit: bool = False,
) -> None:
    """Write ``result`` to stdout in the chosen format.

    For tables: a mapping renders as a two-column key/value table; a list of mappings as
    one row each (``columns`` picks and orders them). ``table_data`` lets a command show a
    different (e.g. flattened) shape in the table than the stable JSON document. With
    ``wide_columns`` (shown only under ``--wide``) or ``fit``, each row stays one line at the
    terminal's width (see :func:`_table`).
    """
    fmt = OutputFormat(fmt or ui.format)
    if isinstance(result, Result):
        _render_result(result, fmt)
        return
    fit = fit or bool(wide_columns)
    data = to_data(result)
    out = ui.out
    if fmt is OutputFormat.json:
        out.write(_dump_json(data) + "\n")
    elif fmt is OutputFormat.jsonl:
        items = data if isinstance(data, list) else [data]
        for item in items:
            out.write(_dump_json(item, indent=None) + "\n")
    elif fmt is OutputFormat.yaml:
        out.write(_dump_yaml(data))
    elif fmt is OutputFormat.csv:
        _write_csv(out, data, columns)
    else:
        shown = to_data(table_data) if table_data is not None else data
        console = _console()
        if isinstance(shown, Mapping):
            rows = [{"key": k, "value": v} for k, v in shown.items()]
            renderable = _table(rows, ["key", "value"], title, width=console.width, fit=fit)
        elif isinstance(shown, list) and all(isinstance(r, Mapping) for r in shown):
            if not shown:
                message(f"{title or 'results'}: none")
                return
            renderable = _table(shown, columns, title, wide_columns, width=console.width, fit=fit)
        else:
            out.write(f"{_cell(shown)}\n")
            return
        if ui.wide:  # as wide as the table needs: nothing is cut short
            from rich.measure import Measurement

            needed = Measurement.get(console, console.options.update(max_width=100_000), renderable).maximum
            console.width = max(console.width, needed)
        console.print(renderable)
    out.flush()


def _render_result(result: Result, fmt: OutputFormat) -> None:
    out = ui.out
    if fmt is OutputFormat.json:
        out.write(_dump_json(result.document()) + "\n")
    elif fmt is OutputFormat.yaml:
        out.write(_dump_yaml(result.document()))
    elif fmt is OutputFormat.jsonl:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        for row in result.rows():
            out.write(dumps(row) + "\n")
    elif fmt is OutputFormat.csv:
        write_csv_rows(out, result.csv_rows(), result.columns)
    else:
        for block in result.tables():
            if block.fmt == "text":
                out.write(block.data)
                out.flush()
            else:
                render(block.data, fmt=block.fmt or fmt, columns=block.columns, title=block.title,
                       wide_columns=block.wide_columns, fit=block.fit)
        for note in result.notes():
            message(note)
        return
    out.flush()


def write_csv_rows(out: IO[str], rows: Iterable[Mapping[str, Any] | tuple[Any, ...] | str],
                   columns: Sequence[str] | None = None) -> int:  # fmt: skip
    """Write ``rows`` as CSV with a header as they come (``columns``, else the first row's keys;
    keys missing from a row are empty cells, keys not in the header are left out). A tuple row
    holds plain cells in ``columns`` order and a str row is an encoded CSV line: each is written
    as it is. Returns the number of rows. Nothing is written for no rows without ``columns``."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    cols = list(columns) if columns else None
    if cols:
        writer.writerow(cols)
    n = 0
    write = writer.writerow
    for row in rows:
        kind = type(row)
        if kind is str:
            out.write(row)  # type: ignore[arg-type]
            n += 1
            continue
        if kind is tuple:
            write(row)
            n += 1
            continue
        if cols is None:
            cols = list(row)
            writer.writerow(cols)
        writer.writerow([_csv_cell(row.get(c)) for c in cols])  # type: ignore[union-attr]  # a mapping here
        n += 1
    return n


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return _dump_json(value, indent=None)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def _write_csv(out: IO[str], data: Any, columns: Sequence[str] | None) -> None:
    """Rows of mappings as CSV with a header (a single mapping as key,value rows)."""
    import csv

    if isinstance(data, Mapping):
        data = [{"key": k, "value": v} for k, v in data.items()]
        columns = ["key", "value"]
    elif not isinstance(data, list):
        data = [{"value": data}]
    rows = [r if isinstance(r, Mapping) else {"value": r} for r in data]
    cols = list(columns or [])
    if not cols:
        for row in rows:
            cols.extend(k for k in row if k not in cols)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in cols])


def render_stream(items: Iterable[Any], *, fmt: OutputFormat | str | None = None) -> int:
    """Write items one per line as they come (``jsonl``); other formats collect first."""
    fmt = OutputFormat(fmt or ui.format)
    if fmt is not OutputFormat.jsonl:
        collected = list(items)
        render(collected, fmt=fmt)
        return len(collected)
    n = 0
    for item in items:
        ui.out.write(_dump_json(to_data(item), indent=None) + "\n")
        ui.out.flush()
        n += 1
    return n


def message(text: str, *, style: str | None = None) -> None:
    """A human line on stderr (hidden by ``--quiet``)."""
    if ui.verbosity < 0:
        return
    if style and ui.err.isatty() and not os.environ.get("NO_COLOR"):
        _console(stderr=True).print(text, style=style, markup=False)
    else:
        ui.err.write(text + "\n")
        ui.err.flush()


def log(text: str) -> None:
    """A detail line on stderr, shown only with ``--verbose``."""
    if ui.verbosity > 0:
        ui.err.write(text + "\n")
        ui.err.flush()


def render_error(exc: MlctlError | BaseException, *, fmt: OutputFormat | str | None = None) -> None:
    """Print an error as one line (plus hint) or, under json, as ``{"error": {...}}`` on stderr."""
    fmt = OutputFormat(fmt or ui.format)
    if isinstance(exc, MlctlError):
        payload = exc.to_dict()
    else:
        payload = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__, "hint": None}
    err = ui.err
    if fmt in (OutputFormat.json, OutputFormat.jsonl):
        err.write(_dump_json({"error": payload}, indent=None) + "\n")
    elif fmt is OutputFormat.yaml:
        err.write(_dump_yaml({"error": payload}))
    else:
        err.write(f"Error: {payload['message']}\n")
        if payload.get("hint"):
            err.write(f"Hint: {payload['hint']}\n")
    err.flush()


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, **kwargs: Any) -> None:
        pass


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._p, self._id = progress, task_id

    def advance(self, n: float = 1) -> None:
        self._p.advance(self._id, n)

    def update(self, **kwargs: Any) -> None:
        self._p.update(self._id, **kwargs)


def progress_enabled() -> bool:
    """Progress bars draw only on an interactive stderr and not under ``--quiet``."""
    return ui.verbosity >= 0 and ui.err.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[_NullTask | _RichTask]:
    """A Rich progress bar on stderr; a no-op when stderr is not a TTY.

    >>> with progress("work", total=2) as task:
    ...     task.advance()
    """
    if not progress_enabled():
        yield _NullTask()
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"), TimeElapsedColumn()]  # noqa: E501
    with Progress(*columns, console=_console(stderr=True), transient=True) as p:
        yield _RichTask(p, p.add_task(description, total=total))
