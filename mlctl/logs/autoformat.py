"""Detect a log's header format from its first lines: ``--log-format auto``, the default.

:func:`detect_format` looks at the first :data:`SAMPLE_LINES` non-blank lines (the first
:data:`SAMPLE_CHARS` characters of each) and returns a :class:`Detection`: the chosen
:class:`~mlctl.logs.formats.LogFormat`, how many sampled lines it matches, and why it was chosen.
Nothing in it knows any particular system; it works in three steps.

1. **Structured lines.** JSON objects with a message key (``jsonl``; ``docker`` when the key is
   ``log`` beside ``stream``), CRI lines (``<RFC 3339 time> stdout|stderr F|P ...``: ``cri``),
   or both mixed (``k8s``).
2. **Text presets.** ``syslog``, ``apache-error`` and ``access`` are taken when they match
   (their one-word fields, such as a syslog tag, holding no whitespace).
3. **An inferred header.** Every sampled line is cut into tokens (whitespace-separated; a
   ``[...]`` group, nested or holding spaces, is one token; ``|`` is a token of its own), and
   every token gets a *shape*: number, date/time (digits and ``-:.,/T``), month, weekday, level
   word (``INFO``, ``warn``, ``E``...), bracketed, host-like (letters with digits: ``node-12``),
   dotted name (``org.app.Main``), punctuation, plain word, other. A *column* (the k-th token of
   every line) is *header-like* when its tokens have header shapes (all but plain words and
   other) in at least :data:`MIN_SHARE` of the lines, or are followed by a run of padding spaces
   there (fixed-width headers). The header is scanned from the left: a header-like column
   extends it; a column whose token ends with ``:`` in most lines (``Component:``) ends it there;
   up to :data:`MAX_WEAK_RUN` other columns are taken when a header-like column follows them
   (``<Host> <Type> <Component> <Level>``). Each header column becomes a ``<Field>`` named after
   its most common shape (``Date``, ``Time``, ``Level``, ``Component``...), constant punctuation
   (``-``, ``|``) stays literal, bracketed columns become ``\\[<Field>\\]``, and the rest of the
   line is ``<Content>``. When the resulting format matches fewer than :data:`MIN_SHARE` of the
   sampled lines, the header is shortened by one column until it does; none at all means
   ``raw`` (the whole line is the content).

Continuation lines are set aside first (:func:`_entries`): indented lines, and, when most lines
start with a date or time but not nearly all, the lines that do not (``Caused by: ...``). They
stay unparsed, as they would with a given format.

Work is bounded: at most :data:`SAMPLE_LINES` lines, :data:`SAMPLE_CHARS` characters and
:data:`MAX_COLUMNS` tokens of each are looked at, each by a single left-to-right scan, and the
candidate formats are the linear-time ones of :mod:`mlctl.logs._format_regex`.

>>> lines = ["2026-01-05 10:00:01 INFO web.Server: started in 3 ms",
...          "2026-01-05 10:00:02 WARN db.Pool: slow query 120 ms"]
>>> detect_format(lines).spec
'<Date> <Time> <Level> <Component>: <Content>'
>>> detect_format(["just words", "and more words"]).spec
'raw'
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlctl.logs.formats import AUTO, PRESETS, LogFormat, _split_json

__all__ = ["AUTO", "Detection", "Header", "detect_format", "infer_header", "resolve_format", "shape", "tokens"]

#: lines looked at (the first non-blank ones)
SAMPLE_LINES = 200
#: characters looked at in each line (its head: headers come first)
SAMPLE_CHARS = 2048
#: tokens of each line that may belong to the header
MAX_COLUMNS = 12
#: share of sampled lines a shape must hold for a column to be stable, and a format must match
MIN_SHARE = 0.9
#: columns of non-header shapes taken between header columns (``<Host> <Type> <Level>``)
MAX_WEAK_RUN = 2

LEVELS = frozenset(
    "trace debug dbg info information informational notice warn warning error err severe fatal critical "
    "crit alert emerg emergency panic verbose fine finer finest failure".split()
)
_LETTER_LEVELS = frozenset("VDIWEFA")  # logcat, glog: a single capital letter
_MONTHS = frozenset(
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august "
    "september october november december".split()
)
_WEEKDAYS = frozenset("mon tue tues wed thu thur thurs fri sat sun monday tuesday wednesday thursday friday "
                      "saturday sunday".split())  # fmt: skip
_NUM = re.compile(r"[+-]?\d+")
_STAMP = re.compile(r"[+-]?\d[\d:.,/\-_T+Z]*")  # dates, times, timestamps, IPv4 addresses
_HOSTLIKE = re.compile(r"[A-Za-z][\w.:/@\-]*")
_DOTTED = re.compile(r"[A-Za-z_$][\w$\-]*(?:\.[\w$\-]+)+")
_WORD = re.compile(r"[A-Za-z][A-Za-z_\-]*")
_CLOCK = re.compile(r"(?<![\d:])\d{1,2}:\d{2}:\d{2}(?![\d:])")  # a time of day: 04:47:44
_PID_TAG = re.compile(r"[^\s\[\]]+\[\d+\]")
_TRAIL = ":,;"

#: shapes that make a stable column part of the header (``word`` and ``other`` do not, alone)
HEADER_SHAPES = frozenset({"num", "stamp", "month", "weekday", "level", "bracket", "punct", "host", "dotted"})


# -- tokens and shapes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    core: str  # the token without its trailing punctuation
    trail: str  # one of ``: , ;`` right after it, or ""
    gap: str  # the whitespace after it ("" when the next token follows directly, or at the end)
    bracket: bool = False

    @property
    def shape(self) -> str:
        return shape(self.core, bracket=self.bracket)


def shape(core: str, *, bracket: bool = False) -> str:
    """The shape of a token (without its trailing ``: , ;``).

    >>> [shape(t) for t in ["2026-01-05", "10:00:01,123", "42", "INFO", "Dec", "node-7", "org.app.Main", "-"]]
    ['stamp', 'stamp', 'num', 'level', 'month', 'host', 'dotted', 'punct']
    """
    if bracket:
        return "bracket"
    if _NUM.fullmatch(core):
        return "num"
    if _STAMP.fullmatch(core):
        return "stamp"
    low = core.lower()
    if low in LEVELS or (len(core) == 1 and core in _LETTER_LEVELS):
        return "level"
    if low in _MONTHS:
        return "month"
    if low in _WEEKDAYS:
        return "weekday"
    if core and not any(c.isalnum() for c in core):
        return "punct"
    if _HOSTLIKE.fullmatch(core) and any(c.isdigit() for c in core):
        return "host"
    if _DOTTED.fullmatch(core):
        return "dotted"
    if _WORD.fullmatch(core):
        return "word"
    return "other"


def _close_bracket(s: str, start: int) -> int:
    """The index of the ``]`` closing the ``[`` at ``start`` (nested pairs counted), or -1."""
    depth = 0
    for i in range(start, len(s)):
        c = s[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    return -1


def tokens(line: str, *, max_tokens: int = MAX_COLUMNS) -> list[Token]:
    """The first ``max_tokens`` tokens of a line's head (one scan of at most :data:`SAMPLE_CHARS` characters).

    >>> [(t.core, t.trail, t.gap) for t in tokens("2026-01-05 10:00:01, [main] app.Main: hi")]
    [('2026-01-05', '', ' '), ('10:00:01', ',', ' '), ('[main]', '', ' '), ('app.Main', ':', ' '), ('hi', '', '')]
    """
    s = line[:SAMPLE_CHARS]
    n = len(s)
    out: list[Token] = []
    i = 0
    while i < n and s[i].isspace():
        i += 1
    # one bracket group is looked for at a time, so a line of "[" does not make this quadratic:
    # an unclosed "[" ends the search for closing brackets in the rest of the head
    unclosed = False
    while i < n and len(out) < max_tokens:
        end, is_bracket = -1, False
        if s[i] == "[" and not unclosed:
            close = _close_bracket(s, i)
            if close < 0:
                unclosed = True
            else:
                after = close + 1
                if after < n and s[after] in _TRAIL and (after + 1 == n or s[after + 1].isspace()):
                    after += 1
                if after == n or s[after].isspace():
                    end, is_bracket = after, True
        if end < 0:
            if s[i] == "|":
                end = i + 1
            else:
                end = i
                while end < n and not s[end].isspace() and s[end] != "|":
                    end += 1
        text = s[i:end]
        trail = ""
        if len(text) > 1 and text[-1] in _TRAIL:
            text, trail = text[:-1], text[-1]
        j = end
        while j < n and s[j].isspace():
            j += 1
        out.append(Token(text, trail, s[end:j], is_bracket))
        i = j
    return out


# -- columns -------------------------------------------------------------------------------------


@dataclass
class Column:
    """The k-th token of every sampled line."""

    index: int
    tokens: list[Token | None]  # None: the line has fewer tokens

    def share(self, predicate: Callable[[Token], bool]) -> float:
        """The share of all sampled lines whose token here satisfies ``predicate`` (no token: no)."""
        return sum(1 for t in self.tokens if t is not None and predicate(t)) / len(self.tokens)

    @property
    def mode(self) -> tuple[str, float]:
        """The most common shape and the share of lines that have it."""
        counts = Counter(t.shape for t in self.tokens if t is not None)
        if not counts:
            return "missing", 0.0
        name, n = counts.most_common(1)[0]
        return name, n / len(self.tokens)

    def constant(self) -> tuple[str, float]:
        counts = Counter(t.core for t in self.tokens if t is not None)
        if not counts:
            return "", 0.0
        text, n = counts.most_common(1)[0]
        return text, n / len(self.tokens)


@dataclass(frozen=True)
class _Part:
    """One header column as format text."""

    text: str  # e.g. "<Time>", "\\[<Context>\\]", "\\-"
    trail: str  # its trailing literal, e.g. ","
    gap: str  # the whitespace after it: " " (any run), "" (none) or "\\s*" (either)

    @property
    def is_field(self) -> bool:
        return "<" in self.text


def _gap(col: Column, min_share: float) -> str:
    spaced = col.share(lambda t: bool(t.gap))
    if spaced >= min_share:
        return " "
    if spaced <= 1 - min_share:
        return ""
    return r"\s*"


_SPECIAL = frozenset("\\.^$*+?{}[]|()<>")


def _escape(text: str) -> str:
    """Literal text in a format string: regular-expression characters (and ``< >``) escaped."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def _name(col: Column, shape_: str, previous: str | None) -> str:
    if previous == "level" and shape_ in ("word", "dotted", "other"):
        return "Component"  # what follows a level is what logged it
    if shape_ == "level":
        return "Level"
    if shape_ == "month":
        return "Month"
    if shape_ == "weekday":
        return "Weekday"
    if shape_ == "num":
        return "Day" if previous == "month" else "Id"
    if shape_ == "stamp":
        has_colon = col.share(lambda t: ":" in t.core) >= 0.5
        return "Time" if has_colon else "Date"
    if shape_ == "host":
        return "Host"
    if shape_ == "dotted":
        return "Component"
    if shape_ == "bracket":
        inner = [t.core[1:-1].strip().lower() for t in col.tokens if t is not None]
        if inner and sum(1 for x in inner if x in LEVELS) >= 0.5 * len(inner):
            return "Level"
        if inner and sum(1 for x in inner if _CLOCK.search(x)) >= 0.5 * len(inner):
            return "Time"
        return "Context"
    return "Field"


@dataclass
class Header:
    """The header columns found by the scan, and whether the last one ends with ``:``."""

    columns: list[Column]
    shapes: list[str]
    colon_end: bool = False


def infer_header(lines: Sequence[str], *, min_share: float = MIN_SHARE,
                 max_weak_run: int = MAX_WEAK_RUN) -> Header:  # fmt: skip
    """Scan the token columns of ``lines`` from the left for the header (see the module docstring)."""
    toks = [tokens(line) for line in lines]
    width = max((len(t) for t in toks), default=0)
    cols = [Column(k, [t[k] if k < len(t) else None for t in toks]) for k in range(min(width, MAX_COLUMNS))]
    taken = 0  # columns in the header so far
    weak = 0
    shapes: list[str] = []
    colon_end = False
    for col in cols[:-1]:  # the last token of the sample's widest line is content
        # a header column must be followed by something in (nearly) every line
        if col.share(lambda t: t is not None) < min_share:
            break
        name, share = col.mode
        colon = col.share(lambda t: t.trail == ":")
        padded = col.share(lambda t: len(t.gap) >= 2 or "\t" in t.gap)
        if colon >= min_share:
            shapes.extend(["word"] * weak)
            shapes.append(name if share >= min_share else "other")
            taken, colon_end = col.index + 1, True
            break
        headerish = col.share(lambda t: t.shape in HEADER_SHAPES)  # node-12 in most lines, 1897 in some
        if headerish >= min_share or padded >= min_share:
            shapes.extend(["word"] * weak)
            shapes.append(name if share >= min_share else "other")
            taken, weak = col.index + 1, 0
            continue
        weak += 1
        if weak > max_weak_run:
            break
    # a header must be followed by content: stop before the last token of most lines
    while taken and cols[taken].share(lambda t: True) < min_share:
        taken -= 1
        shapes.pop()
        colon_end = False
    return Header(cols[:taken], shapes[:taken], colon_end and taken > 0)


def _parts(header: Header, min_share: float) -> list[_Part]:
    parts: list[_Part] = []
    previous: str | None = None
    for i, (col, shape_) in enumerate(zip(header.columns, header.shapes, strict=True)):
        trail, trail_share = Counter(t.trail for t in col.tokens if t is not None).most_common(1)[0]
        last = i == len(header.columns) - 1
        const, const_share = col.constant()
        if shape_ == "punct" and const_share >= 0.995 and not trail:
            text = _escape(const)
        elif shape_ == "bracket":
            text = rf"\[<{_name(col, shape_, previous)}>\]"
        elif last and header.colon_end and col.share(lambda t: bool(_PID_TAG.fullmatch(t.core))) >= 0.5:
            text = r"<Component>(\[<Pid>\])?"
        else:
            text = f"<{'Component' if last and header.colon_end else _name(col, shape_, previous)}>"
        literal = _escape(trail) if trail and trail_share >= min_share else ""
        parts.append(_Part(text, literal, _gap(col, min_share)))
        previous = shape_
    return parts


def _unique(spec_parts: list[str]) -> str:
    seen: Counter[str] = Counter()

    def rename(m: re.Match[str]) -> str:
        name = m.group(1)
        seen[name] += 1
        return f"<{name}>" if seen[name] == 1 else f"<{name}{seen[name]}>"

    return re.sub(r"<([A-Za-z_][A-Za-z0-9_]*)>", rename, "".join(spec_parts))


def _format_of(parts: list[_Part]) -> str:
    """The format string of header parts followed by ``<Content>``.

    A field needs whitespace after it unless literal text follows (``<Time>\\|``): a field
    directly followed by another field, or by the content, would match nothing.
    """
    out = []
    for i, part in enumerate(parts):
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        gap = part.gap
        if part.is_field and not part.trail and (nxt is None or nxt.is_field):
            gap = " "
        elif nxt is None and gap == r"\s*":
            gap = " " if part.is_field else gap
        out.append(part.text + part.trail + gap)
    return _unique([*out, "<Content>"])


# -- choosing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """What :func:`detect_format` chose, and on what evidence."""

    format: LogFormat
    sampled: int  # non-blank lines looked at
    matched: int  # of those, lines the format splits
    how: str  # "structured", "preset", "inferred" or "none"
    candidates: tuple[str, ...] = field(default=(), compare=False)  # inferred formats tried, in order
    continued: int = 0  # sampled lines left out as indented continuations of the entry above

    @property
    def spec(self) -> str:
        """The preset name or format string, as ``--log-format`` takes it."""
        return self.format.name or self.format.spec

    @property
    def share(self) -> float:
        return self.matched / self.sampled if self.sampled else 0.0

    def describe(self) -> str:
        """One line for stderr."""
        if self.how == "none":
            return (f"log format: no header found in the first {self.sampled} line(s), the whole line is the "
                    "content (pass -f FORMAT to set one)")  # fmt: skip
        what = f"preset {self.spec}" if self.format.name else repr(self.spec)
        also = f", {self.continued} continuation line(s) aside" if self.continued else ""
        return (f"log format: detected {what}, matching {self.matched} of the first {self.sampled} line(s)"
                f"{also} (pass -f FORMAT to set one)")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.spec,
            "detected": True,
            "how": self.how,
            "preset": self.format.name,
            "sampled": self.sampled,
            "matched": self.matched,
            "continued": self.continued,
        }


def split_head(lines: Iterable[tuple[int, str]], n: int = SAMPLE_LINES
               ) -> tuple[list[tuple[int, str]], Iterator[tuple[int, str]]]:
    """Read numbered lines up to the ``n``-th non-blank one: (those lines, every line from the first).

    >>> head, every = split_head(enumerate(["a", "", "b", "c"]), n=2)
    >>> head, list(every)
    ([(0, 'a'), (1, ''), (2, 'b')], [(0, 'a'), (1, ''), (2, 'b'), (3, 'c')])
    """
    rest = iter(lines)
    head: list[tuple[int, str]] = []
    seen = 0
    for item in rest:
        head.append(item)
        seen += bool(item[1].strip())
        if seen >= n:
            break
    return head, itertools.chain(head, rest)


def sample(lines: Iterable[str], n: int = SAMPLE_LINES) -> list[str]:
    """The first ``n`` non-blank lines (no more are read from ``lines``)."""
    out: list[str] = []
    for line in lines:
        if line.strip():
            out.append(line)
            if len(out) >= n:
                break
    return out


def _matches(fmt: LogFormat, lines: Sequence[str]) -> list[tuple[dict[str, str], str]]:
    return [p for p in (fmt.split(line) for line in lines) if p is not None]


def _structured(lines: Sequence[str], min_share: float) -> tuple[LogFormat, int] | None:
    n = len(lines)
    json_docs = 0
    log_key = 0  # docker json-file: the message under "log", beside "stream" (renamed Stream)
    for line in lines:
        text = line.strip()
        if text.startswith("{"):
            parts = _split_json(text)
            if parts is not None:
                json_docs += 1
                log_key += "Stream" in parts[0]
    cri = 0
    for line in lines:
        parts = PRESETS["cri"].split(line)
        if parts is not None and parts[0]["Stream"] in ("stdout", "stderr") and parts[0]["Flag"] in ("F", "P"):
            if _STAMP.fullmatch(parts[0]["Time"]) and "T" in parts[0]["Time"]:
                cri += 1
    if json_docs >= min_share * n:
        name = "docker" if log_key >= min_share * json_docs else "jsonl"
        return PRESETS[name], json_docs
    if cri >= min_share * n:
        return PRESETS["cri"], cri
    if json_docs and cri and json_docs + cri >= min_share * n:
        return PRESETS["k8s"], json_docs + cri
    return None


#: header fields of the presets that hold text with spaces by design
_SPACED_FIELDS = frozenset({"Time", "UserAgent", "Referer"})


def _syslog_ok(h: dict[str, str]) -> bool:
    return h["Month"].lower() in _MONTHS and h["Day"].isdigit() and bool(_CLOCK.fullmatch(h["Time"]))


def _apache_ok(h: dict[str, str]) -> bool:
    return h["Level"].lower().rstrip("0123456789") in LEVELS and bool(_CLOCK.search(h["Time"]))


def _access_ok(h: dict[str, str]) -> bool:
    return len(h["Status"]) == 3 and h["Status"].isdigit()


#: the text presets tried, each with what its fields must look like for a line to count
_PRESET_CHECKS = {"syslog": _syslog_ok, "apache-error": _apache_ok, "access": _access_ok}


def _preset(lines: Sequence[str], min_share: float) -> tuple[LogFormat, int] | None:
    for name, check in _PRESET_CHECKS.items():
        fmt = PRESETS[name]
        spaced = _SPACED_FIELDS | {"Component"} if name == "syslog" else _SPACED_FIELDS  # "Google Chrome[12]:"
        good = 0
        for headers, _ in _matches(fmt, lines):
            words = all(not any(c.isspace() for c in v) for k, v in headers.items() if k not in spaced)
            good += words and check(headers)
        if good >= min_share * len(lines):
            return fmt, good
    return None


#: the shapes an entry's first token has when entries start with a time (continuation lines do not)
_ENTRY_STARTS = frozenset({"stamp", "month", "weekday", "bracket"})


def _entries(lines: list[str], min_share: float) -> list[str]:
    """The lines that start a log entry, the header is looked for in (the others stay unparsed).

    Indented lines continue the entry above (stack traces, wrapped messages). And when most but
    not nearly all of the rest begin with a date or time, those that do not (``Caused by: ...``,
    ``ValueError: ...``) are continuations too.
    """
    entries = [line for line in lines if not line[0].isspace()] or lines
    firsts = [tokens(line, max_tokens=1) for line in entries]
    starts = Counter(t[0].shape for t in firsts if t)
    if starts:
        first, n = starts.most_common(1)[0]
        if first in _ENTRY_STARTS and 0.5 * len(entries) <= n < min_share * len(entries):
            entries = [line for line, t in zip(entries, firsts, strict=True) if t and t[0].shape == first]
    return entries


def detect_format(lines: Iterable[str], *, min_share: float = MIN_SHARE, max_weak_run: int = MAX_WEAK_RUN,
                  presets: bool = True) -> Detection:  # fmt: skip
    """Detect the header format of a log from its first lines (see the module docstring).

    ``lines`` may be longer than the sample: only the first :data:`SAMPLE_LINES` non-blank ones
    are read. ``min_share`` and ``max_weak_run`` are the two constants of the method (exposed so
    they can be chosen on held-out data); ``presets=False`` skips the named text presets and
    always infers (the structured JSON/CRI kinds are still recognised).
    """
    full = sample(lines)
    if not full:
        return Detection(PRESETS["raw"], 0, 0, "none")
    found = _structured(full, min_share)  # a JSON document is parsed whole (in linear time)
    if found is not None:
        return Detection(found[0], len(full), found[1], "structured")
    head = _entries([line[:SAMPLE_CHARS] for line in full], min_share)
    continued = len(full) - len(head)
    if presets:
        found = _preset(head, min_share)
        if found is not None:
            return Detection(found[0], len(full), found[1], "preset", continued=continued)
    header = infer_header(head, min_share=min_share, max_weak_run=max_weak_run)
    tried: list[str] = []
    parts = _parts(header, min_share)
    while parts:
        spec = _format_of(parts)
        tried.append(spec)
        fmt = LogFormat.compile(spec)
        matched = len(_matches(fmt, head))
        if matched >= min_share * len(head):
            return Detection(fmt, len(full), matched, "inferred", tuple(tried), continued)
        if "(\\[<Pid>\\])?" in parts[-1].text:  # try the tag without its [pid] split first
            parts[-1] = _Part("<Component>", parts[-1].trail, parts[-1].gap)
            continue
        parts = parts[:-1]
    raw = PRESETS["raw"]
    return Detection(raw, len(full), len(full), "none", tuple(tried))


def resolve_format(spec: str | LogFormat | None, lines: Iterable[str]) -> tuple[LogFormat, Detection | None]:
    """``spec`` resolved (:meth:`LogFormat.resolve`); ``auto`` detected from ``lines``, with its :class:`Detection`."""
    fmt = LogFormat.resolve(spec)
    if fmt.kind != AUTO:
        return fmt, None
    detection = detect_format(lines)
    return detection.format, detection
