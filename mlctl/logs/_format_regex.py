"""Compile a Loghub-style format string into a regular expression that matches in linear time.

The naive translation, every header field a lazy ``(.*?)`` and every run of spaces ``\\s+``, is
what Loghub's own tools do, and it backtracks catastrophically: on a line that does not match,
the regex engine tries every way of spreading the words over the fields (a line of 400 words
under ``<Date> <Time> <Level> <Component>: <Content>`` does not finish in minutes).

Here every header field ends where what follows it in the format can begin, so the engine never
has a choice to undo:

* the set of characters that can begin the rest of the format after a field (its *stops*) is
  worked out from the format: ``<Time>\\]`` stops at ``]``, ``<Component>(\\[<PID>\\])?:`` at
  ``[`` or ``:``, ``<Date> <Time>`` at whitespace;
* the field is a possessive run of any other character, ``[^stops]*+``: it cannot hold a stop,
  and since what follows must begin with one, the lazy field of the naive regex would have ended
  at the same place;
* a field followed by a separator and then more literal text may hold that separator where the
  text does not follow it: ``<Component>: <Content>`` runs up to the first ``:`` followed by
  whitespace, ``<Program> - <Content>`` word by word up to the first `` - ``, as the lazy field
  would (each separator is looked at once, so this stays linear);
* runs of spaces are possessive ``\\s++``.

A field directly followed by something that can begin with any character (another field,
``.``, a negated class) is empty, which is where the lazy field would have ended. What is still
the user's own is the regular-expression text between placeholders: a literal part such as
``(a+)+`` backtracks however the fields are built.

Where the naive regex matched a line only by backtracking into an earlier field (a component
holding a ``[`` that no ``]:`` follows, an empty field carved out of a run of spaces), the line
is now kept unparsed. On the Loghub-2k sample every line splits exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CONTENT = "Content"
#: a placeholder: ``<Name>``, the name an ASCII identifier
FIELD = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
# ``<1abc>``, ``<my-field>``, ``<Dátum>``: meant as a placeholder, but not a valid name
_BAD_FIELD = re.compile(r"<([\w.\-]+)>")
_QUANT = re.compile(r"(?:[?*+]|\{(?:\d+(?:,\d*)?|,\d+)\})[?+]?")
_END = "$END"  # in a FIRST set: the end of the line
_ANY = "$ANY"  # in a FIRST set: any character at all

First = frozenset[str]  # the class fragments (and _END, _ANY) that can begin what follows
_ANYTHING: First = frozenset({_ANY})


class FormatSyntaxError(ValueError):
    """The format string is not a valid pattern (a bad field name, an unbalanced group or class)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class _Char:
    """One literal element: a character, an escape, a class, ``.``; or a run of spaces (``ws``)."""

    text: str
    first: First
    quant: str = ""
    ws: bool = False
    zero: bool = False  # zero-width: an anchor such as ^ $ \b

    @property
    def nullable(self) -> bool:
        return self.zero or _min_zero(self.quant)


@dataclass
class _Field:
    name: str
    quant: str = ""


@dataclass
class _Group:
    opening: str  # "(", "(?:", "(?>", "(?P<name>", "(?=" ...
    alts: list[list[_Atom]] = field(default_factory=list)
    quant: str = ""
    zero: bool = False  # a lookaround or an inline flag/comment group

    @property
    def nullable(self) -> bool:
        return self.zero or _min_zero(self.quant) or any(all(_nullable(a) for a in alt) for alt in self.alts)

    @property
    def repeats(self) -> bool:
        q = self.quant[:-1] if len(self.quant) > 1 and self.quant[-1] in "?+" else self.quant
        if q in ("*", "+"):
            return True
        m = re.fullmatch(r"\{(\d*)(?:,(\d*))?\}", q)
        if not m:
            return False
        if "," not in q:
            return int(m.group(1) or 0) > 1
        return not m.group(2) or int(m.group(2)) > 1


_Atom = _Char | _Field | _Group


def _min_zero(quant: str) -> bool:
    if not quant:
        return False
    if quant[0] in "?*":
        return True
    m = re.match(r"\{(\d*)", quant)
    return m is not None and int(m.group(1) or 0) == 0


def _nullable(atom: _Atom) -> bool:
    return True if isinstance(atom, _Field) else atom.nullable


# -- parsing the format string -----------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.fields: list[str] = []

    def parse(self) -> list[list[_Atom]]:
        alts = self._alts()
        if self.i < len(self.s):
            raise FormatSyntaxError(f"unbalanced parenthesis at position {self.i}")
        return alts

    def _alts(self) -> list[list[_Atom]]:
        alts: list[list[_Atom]] = [[]]
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == ")":
                return alts
            if c == "|":
                self.i += 1
                alts.append([])
                continue
            atom = self._atom()
            q = _QUANT.match(s, self.i)
            if q and not (isinstance(atom, _Char) and atom.zero):
                self.i = q.end()
                if not (isinstance(atom, _Char) and atom.ws):  # " ?" was "\s+?": still one or more
                    atom.quant = q.group()
            alts[-1].append(atom)
        return alts

    def _atom(self) -> _Atom:
        s, i = self.s, self.i
        c = s[i]
        m = FIELD.match(s, i)
        if m:
            self.i = m.end()
            self.fields.append(m.group(1))
            return _Field(m.group(1))
        bad = _BAD_FIELD.match(s, i)
        if bad:
            raise FormatSyntaxError(
                f"<{bad.group(1)}> is not a valid field name (a name is ASCII letters, digits and _, "
                "not starting with a digit)",
                hint=r"rename the field, e.g. <F1abc>, or write \<...> to match the angle brackets literally",
            )
        if c == " ":
            j = i
            while j < len(s) and s[j] == " ":
                j += 1
            self.i = j
            return _Char(r"\s++", frozenset({r"\s"}), ws=True)
        if c == "\\":
            return self._escape()
        if c == "[":
            return self._class()
        if c == "(":
            return self._group()
        self.i = i + 1
        if c == ".":
            return _Char(c, _ANYTHING)
        if c in "^$":
            return _Char(c, frozenset(), zero=True)
        if c in "*+?{":  # a quantifier with nothing to repeat; re.compile reports it
            return _Char(c, _ANYTHING)
        return _Char(c, frozenset({re.escape(c)}))

    def _escape(self) -> _Char:
        s, i = self.s, self.i
        if i + 1 >= len(s):
            raise FormatSyntaxError("the format ends with a lone backslash")
        c = s[i + 1]
        self.i = i + 2
        if c in "sdwSDW":
            return _Char("\\" + c, frozenset({"\\" + c}))
        if c in "bBAZ":
            return _Char("\\" + c, frozenset(), zero=True)
        if c.isdigit() or c in "xuUNg":  # backreferences, numeric escapes: not worth modelling
            m = re.match(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}]*\}|[0-7]{1,3}|\d+)", s[i:])
            if m:
                self.i = i + m.end()
            return _Char(s[i : self.i], _ANYTHING)
        return _Char("\\" + c, frozenset({"\\" + c}))

    def _class(self) -> _Char:
        s, i = self.s, self.i
        j = i + 1
        negated = j < len(s) and s[j] == "^"
        if negated:
            j += 1
        start = j
        if j < len(s) and s[j] == "]":
            j += 1
        while j < len(s) and s[j] != "]":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise FormatSyntaxError(f"unterminated character set at position {i}")
        self.i = j + 1
        inner = s[start:j]
        simple = inner and not inner.startswith("]") and "[" not in inner
        return _Char(s[i : j + 1], frozenset({inner}) if simple and not negated else _ANYTHING)

    def _group(self) -> _Group:
        s, i = self.s, self.i
        m = re.match(r"\(\?(?:P<[A-Za-z_]\w*>|[:>=!]|<[=!])", s[i:]) or re.match(r"\(", s[i:])
        assert m is not None
        opening = m.group()
        if re.match(r"\(\?#[^)]*\)", s[i:]):  # a comment
            end = s.index(")", i) + 1
            self.i = end
            return _Group(s[i:end], [], zero=True)
        flags = re.match(r"\(\?[aiLmsux-]+(\)|:)", s[i:])
        if flags:  # a class excluding the stops excludes them whatever the case, so (?i) is fine
            opening = flags.group()
            if opening.endswith(")"):
                self.i = i + len(opening)
                return _Group(opening[:-1], [], zero=True)
        self.i = i + len(opening)
        alts = self._alts()
        if self.i >= len(s) or s[self.i] != ")":
            raise FormatSyntaxError(f"missing ), unterminated subpattern at position {i}")
        self.i += 1
        zero = opening in ("(?=", "(?!", "(?<=", "(?<!")
        return _Group(opening, alts, zero=zero)


# -- FIRST sets ----------------------------------------------------------------------------------


def _first_atom(atom: _Atom) -> First:
    if isinstance(atom, _Field):
        return _ANYTHING
    if isinstance(atom, _Char):
        return frozenset() if atom.zero else atom.first
    if atom.zero:
        return frozenset()
    out: First = frozenset()
    for alt in atom.alts:
        out |= _first_seq(alt, 0, frozenset())
    return out


def _first_seq(atoms: list[_Atom], start: int, follow: First) -> First:
    """What can begin ``atoms[start:]`` followed by something beginning with ``follow``."""
    out: First = frozenset()
    for atom in atoms[start:]:
        out |= _first_atom(atom)
        if not _nullable(atom):
            return out
    return out | follow


# -- emitting the regex ------------------------------------------------------------------------


@dataclass
class Compiled:
    pattern: str
    fields: list[str]
    content_last: bool  # the pattern ends with the Content field: a line's tail can be content


def _class_of(stops: frozenset[str]) -> str:
    frags = "".join(sorted(_safe_in_class(f) for f in stops if f != _END))
    return f"[^{frags}]" if frags else "."


def _safe_in_class(inner: str) -> str:
    """A class's inner text that stays itself beside others: no bare ``-`` at either end."""
    if inner.startswith("-"):
        inner = "\\" + inner
    if inner.endswith("-") and not inner.endswith("\\-"):
        inner = inner[:-1] + "\\-"
    return inner


def _lookahead(atoms: list[_Atom], start: int) -> str:
    """The plain literal text at ``atoms[start:]`` (runs of spaces as one ``\\s``), up to a field or group."""
    out = ""
    for atom in atoms[start:]:
        if not isinstance(atom, _Char) or atom.quant or atom.zero or _ANY in atom.first:
            break
        out += r"\s" if atom.ws else atom.text
    return out


class _Emitter:
    def seq(self, atoms: list[_Atom], follow: First) -> str:
        out = []
        for i, atom in enumerate(atoms):
            if isinstance(atom, _Field):
                out.append(self.field(atom, atoms, i, follow) + atom.quant)
            elif isinstance(atom, _Char):
                out.append(atom.text + atom.quant)
            elif atom.opening.startswith("(?#"):  # a comment, kept whole
                out.append(atom.opening)
            elif atom.zero:
                out.append(atom.opening + "|".join(self.seq(a, _ANYTHING) for a in atom.alts) + ")" + atom.quant)
            else:
                cont = _first_seq(atoms, i + 1, follow)
                inner = cont | _first_atom(atom) if atom.repeats else cont
                out.append(atom.opening + "|".join(self.seq(a, inner) for a in atom.alts) + ")" + atom.quant)
        return "".join(out)

    def field(self, atom: _Field, atoms: list[_Atom], i: int, follow: First) -> str:
        name = atom.name
        if name == CONTENT:
            return f"(?P<{name}>.*)"
        stops = _first_seq(atoms, i + 1, follow)
        if _ANY in stops:  # anything may follow: the lazy field would have stayed empty
            return f"(?P<{name}>)"
        nxt = atoms[i + 1] if i + 1 < len(atoms) else None
        if isinstance(nxt, _Char) and nxt.first and not nxt.quant and not nxt.zero:
            look = _lookahead(atoms, i + 2)
            if look:  # up to the first separator that the rest of the literal text follows
                if nxt.ws:
                    return rf"(?P<{name}>\S*+(?:\s++(?!{look})\S++)*+)"
                other = _class_of(nxt.first)
                return rf"(?P<{name}>{other}*+(?:{nxt.text}(?!{look}){other}*+)*+)"
        if not (stops - {_END}):
            return f"(?P<{name}>.*+)"
        return f"(?P<{name}>{_class_of(stops)}*+)"


def compile_format(format_string: str) -> Compiled:
    """The linear-time regex text (without anchors) of a format string, its fields in order."""
    parser = _Parser(format_string)
    alts = parser.parse()
    emitter = _Emitter()
    end = frozenset({_END})
    pattern = "|".join(emitter.seq(alt, end) for alt in alts)
    top = alts[0] if len(alts) == 1 else []
    content_last = bool(top) and isinstance(top[-1], _Field) and top[-1].name == CONTENT and not top[-1].quant
    return Compiled(pattern, parser.fields, content_last)
