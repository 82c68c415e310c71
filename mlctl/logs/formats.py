"""Log formats: split a raw line into header fields and the message (``Content``) templates are mined from.

A format string follows the Loghub convention: ``<Field>`` placeholders, the rest literal, and
any run of spaces matches any run of whitespace, e.g. ``'<Date> <Time> <Level> <Component>: <Content>'``.
The literal parts are regular-expression text, as in Loghub's ``formats.json``: ``\\[`` is a
literal bracket and ``(\\[<PID>\\])?`` an optional part, so a literal ``[ ( . * + ?`` must be
escaped with a backslash. Placeholders are names (ASCII letters, digits, ``_``, not starting
with a digit); ``<Content>`` is required, and ``<1abc>`` or ``<my-field>`` is refused.

Matching takes time linear in the line (:mod:`mlctl.logs._format_regex`): a header field ends
at the first place where what follows it in the format can match, so ``<Date> <Time>`` fields
hold no whitespace and ``<Component>: <Content>`` runs up to the first ``:`` followed by a
space (a field followed by whitespace and literal text, ``<Program> - <Content>``, may hold
words). A line longer than :data:`MAX_LINE_CHARS` is matched on its head and, for formats that
end with ``<Content>``, the rest is added to its content.

Presets (:data:`PRESETS`) cover common formats: ``syslog``, ``apache-error``, ``access`` (nginx
and Apache combined/common access logs; the request line is the content), ``jsonl`` (the message
comes from a ``message``, ``msg``, ``log`` or ``MESSAGE`` key, the other top-level keys are
headers), ``docker`` (docker json-file), ``cri`` (containerd/CRI-O ``<Time> <Stream> <Flag>
<Content>``) and ``k8s`` (either container log kind, line by line).

``auto`` (:data:`AUTO`, the default of the ``classify-logs`` commands when no format is set) is
not a format but a request to detect one from the first lines: :func:`LogFormat.resolve`
gives a placeholder of kind ``auto`` that :func:`mlctl.logs.autoformat.detect_format` replaces
(:func:`~mlctl.logs.parse.parse_lines` and the pipeline do so with the lines they read).

:meth:`LogFormat.split` returns ``(headers, content)`` or ``None`` when a line does not match;
such a line is kept (``parsed=False``) and later goes to the ``unparsed`` class.
:func:`read_lines` reads bytes and decodes invalid UTF-8 with replacement characters.

>>> fmt = LogFormat.compile("<Date> <Time> <Level> <Component>: <Content>")
>>> fmt.split("081109 203615 INFO dfs.DataNode: Receiving block blk_1")
({'Date': '081109', 'Time': '203615', 'Level': 'INFO', 'Component': 'dfs.DataNode'}, 'Receiving block blk_1')
>>> fmt.split("no match") is None
True
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from mlctl.core.errors import NotFound, UsageError
from mlctl.logs._format_regex import CONTENT, FormatSyntaxError, compile_format

MESSAGE_KEYS = ("message", "msg", "log", "MESSAGE", "Message")
#: ``--log-format auto``: detect the format from the first lines (see :mod:`mlctl.logs.autoformat`)
AUTO = "auto"
#: A longer line is matched on its first MAX_LINE_CHARS characters; the rest goes to its content
#: (for formats that end with ``<Content>``), so the work per line is bounded and nothing is lost.
MAX_LINE_CHARS = 64 * 1024


@dataclass(frozen=True)
class LogFormat:
    """A compiled log format: ``kind`` is ``regex``, ``json`` or ``k8s`` (JSON or CRI, line by line),
    or ``auto``: a placeholder to be replaced by the format detected from the first lines."""

    spec: str
    fields: tuple[str, ...]  # header fields in order, without Content
    kind: str = "regex"
    regex: re.Pattern[str] | None = field(default=None, compare=False)
    name: str | None = None  # the preset name, if any
    content_last: bool = field(default=False, compare=False)  # the format ends with <Content>

    @classmethod
    def compile(cls, format_string: str, *, name: str | None = None) -> LogFormat:
        """Compile a Loghub-style format string (see the module docstring)."""
        if not isinstance(format_string, str) or not format_string.strip():
            raise UsageError("empty log format", hint="e.g. --log-format '<Date> <Time> <Level> <Content>'")
        hint = r"literal parts are regular expressions: escape [ ] ( ) . * + ? < as \[ \] \( \) ..."
        try:
            compiled = compile_format(format_string)
        except FormatSyntaxError as exc:
            raise UsageError(f"log format {format_string!r} is not valid: {exc}", hint=exc.hint or hint) from exc
        fields = compiled.fields
        for part in fields:
            if fields.count(part) > 1:
                raise UsageError(f"log format names <{part}> twice", hint="each placeholder must be unique")
        if CONTENT not in fields:
            raise UsageError(
                f"log format {format_string!r} has no <Content> placeholder",
                hint="the message templates are mined from must be marked <Content>",
            )
        try:
            regex = re.compile(f"^{compiled.pattern}$", re.DOTALL)
        except re.error as exc:
            raise UsageError(f"log format {format_string!r} is not valid: {exc}", hint=hint) from exc
        header = tuple(f for f in fields if f != CONTENT)
        return cls(format_string, header, "regex", regex, name, compiled.content_last)

    @classmethod
    def resolve(cls, spec: str | LogFormat | None) -> LogFormat:
        """A preset by name, a format string, ``auto`` (a placeholder to detect), or ``None`` (raw)."""
        if isinstance(spec, LogFormat):
            return spec
        if spec is None:
            return PRESETS["raw"]
        if not spec.strip():
            raise UsageError("empty log format", hint="give a preset name or a format such as '<Level> <Content>'")
        if spec in PRESETS:
            return PRESETS[spec]
        if spec.strip().lower() == AUTO:
            return AUTO_FORMAT
        if "<" not in spec:
            raise NotFound(
                f"unknown log format preset {spec!r}",
                hint=f"use {AUTO}, one of {', '.join(sorted(PRESETS))}, or a format string with <Field> placeholders",
            )
        return cls.compile(spec)

    def split(self, line: str) -> tuple[dict[str, str], str] | None:
        """``(headers, content)``, or ``None`` when the line does not match the format."""
        text = line.strip()
        if not text:
            return None
        if self.kind == "json" or (self.kind == "k8s" and text.startswith("{")):
            return _split_json(text)
        if self.kind == "k8s":
            return PRESETS["cri"].split(text)
        if self.kind == AUTO:
            raise UsageError(
                "the auto log format has not been detected yet",
                hint="detect it from the first lines: mlctl.logs.autoformat.detect_format(lines).format",
            )
        assert self.regex is not None
        tail = ""
        if len(text) > MAX_LINE_CHARS and self.content_last:  # bounded work: the rest is content
            text, tail = text[:MAX_LINE_CHARS], text[MAX_LINE_CHARS:]
        m = self.regex.match(text)
        if m is None:
            return None
        groups = m.groupdict()
        headers = {f: (groups[f] or "").strip() for f in self.fields}
        return headers, ((groups[CONTENT] or "") + tail).strip()

    def splitter(self) -> Callable[[str], tuple[tuple[str, ...], str] | None]:
        """A function like :meth:`split` giving the header values as a tuple in :attr:`fields` order
        (a field the line lacks is ``""``): the batch path, without a dict per line.

        >>> LogFormat.compile("<Level> <Content>").splitter()(" WARN disk full ")
        (('WARN',), 'disk full')
        """
        fields = self.fields
        if self.kind != "regex" or self.regex is None:
            split = self.split

            def generic(line: str) -> tuple[tuple[str, ...], str] | None:
                parts = split(line)
                if parts is None:
                    return None
                headers, content = parts
                return tuple(headers.get(f, "") for f in fields), content

            return generic
        match = self.regex.match
        index = self.regex.groupindex
        content_at = index[CONTENT] - 1  # in m.groups(), which also holds unnamed groups
        at = [index[f] - 1 for f in fields]
        pick = itemgetter(*at) if len(at) > 1 else (lambda g: (g[at[0]],)) if at else (lambda g: ())
        content_last = self.content_last
        strip = str.strip

        def fast(line: str) -> tuple[tuple[str, ...], str] | None:
            text = line.strip()
            if not text:
                return None
            tail = ""
            if content_last and len(text) > MAX_LINE_CHARS:
                text, tail = text[:MAX_LINE_CHARS], text[MAX_LINE_CHARS:]
            m = match(text)
            if m is None:
                return None
            groups = m.groups()
            if None in groups:  # an optional part that did not match
                groups = tuple(g or "" for g in groups)
            content = groups[content_at]
            return tuple(map(strip, pick(groups))), (content + tail).strip() if tail else content.strip()

        return fast


def _split_json(text: str) -> tuple[dict[str, str], str] | None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested thousands deep
        return None
    if not isinstance(doc, dict):
        return None
    for key in MESSAGE_KEYS:
        value = doc.get(key)
        if isinstance(value, str):
            headers = {k: _scalar(v) for k, v in doc.items() if k != key and not isinstance(v, (dict, list))}
            if key == "log":  # docker json-file: {"log": "...\n", "stream": "stdout", "time": "..."}
                if "time" in headers:
                    headers["Time"] = headers.pop("time")
                if "stream" in headers:
                    headers["Stream"] = headers.pop("stream")
            return headers, value.strip()
    return None


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _preset(name: str, spec: str) -> LogFormat:
    return LogFormat.compile(spec, name=name)


#: Named formats for ``--log-format``.
PRESETS: dict[str, LogFormat] = {
    "raw": _preset("raw", "<Content>"),
    "syslog": _preset("syslog", r"(<\d+>)?<Month> <Day> <Time> <Host> <Component>(\[<PID>\])?: <Content>"),
    "apache-error": _preset(
        "apache-error",
        r"\[<Time>\] \[(<Module>:)?<Level>\]( \[pid <PID>(:tid <TID>)?\])?( \[client <Client>\])? <Content>",
    ),
    "access": _preset(
        "access", r'<Client> <Ident> <User> \[<Time>\] "<Content>" <Status> <Size>( "<Referer>" "<UserAgent>")?'
    ),
    "cri": _preset("cri", "<Time> <Stream> <Flag> <Content>"),
    "jsonl": LogFormat("jsonl", (), "json", None, "jsonl"),
    "docker": LogFormat("docker", ("Time", "Stream"), "json", None, "docker"),
    "k8s": LogFormat("k8s", ("Time", "Stream"), "k8s", None, "k8s"),
}
PRESETS["nginx"] = PRESETS["access"]
#: the placeholder ``LogFormat.resolve("auto")`` gives (not a preset: it cannot split a line)
AUTO_FORMAT = LogFormat(AUTO, (), AUTO, None, AUTO)


def read_lines(source: str | Path | IO[bytes] | IO[str]) -> Iterator[tuple[int, str]]:
    """``(line_no, text)`` for every line of a file or stream, 1-based.

    Bytes are decoded as UTF-8 with replacement characters (binary garbage gives text, never an
    error); only the line ending (``\\n`` or ``\\r\\n``) is removed. Empty lines are yielded too
    (the parser keeps them as records with ``parsed=False``). A file path that does not exist
    raises :class:`~mlctl.core.errors.NotFound`.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            stream: IO[Any] = path.open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"log file {path} does not exist", hint="check the path") from exc
        except IsADirectoryError as exc:
            raise UsageError(f"{path} is a directory, not a log file", hint="pass a file") from exc
        with stream:
            yield from _iter_blocks(stream)
    else:
        yield from _iter_stream(source)


_BLOCK = 1 << 20


def _iter_blocks(stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """:func:`_iter_stream` for a file: read and decode a block of whole lines at a time.

    Decoding a block gives the same text as decoding each of its lines (a newline ends any
    invalid UTF-8 sequence before it), and ``\r\n`` only occurs at the end of a line.
    """
    number = 1
    pending: list[bytes] = []  # the start of a line not ended yet
    while True:
        chunk = stream.read(_BLOCK)
        if not chunk:
            break
        end = chunk.rfind(b"\n") + 1
        if not end:
            pending.append(chunk)
            continue
        data = b"".join((*pending, chunk[:end])) if pending else chunk[:end]
        pending = [chunk[end:]] if end < len(chunk) else []
        lines = data.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
        lines.pop()  # the empty string after the last newline
        yield from zip(itertools.count(number), lines)
        number += len(lines)
    if pending:
        yield number, b"".join(pending).decode("utf-8", errors="replace")


def _iter_stream(stream: IO[Any]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, 1):
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        if line.endswith("\n"):
            line = line[:-2] if line.endswith("\r\n") else line[:-1]
        yield number, line


def lines_from_text(text: str) -> Iterator[tuple[int, str]]:
    """:func:`read_lines` over an in-memory string (tests, examples)."""
    return _iter_stream(io.BytesIO(text.encode("utf-8", "surrogateescape")))
