"""Generic variable masking: the tokens of a log message that are data, not wording, become ``<*>``.

Masking runs per whitespace-separated token before template mining and decides much of the
parser's accuracy. Every rule here is generic (nothing is specific to one system):

* whole values: IPv4 and IPv6 addresses (with an optional port), UUIDs, URLs, e-mail addresses,
  file paths (two or more separators), hex numbers (``0x1f``) and long hex ids, numbers with an
  optional sign, decimals, exponent and unit (``12ms``, ``3.5GB``, ``-7``), dates and times;
* ``key=value`` pairs keep the key and mask the value (``uid=0`` -> ``uid=<*>``), and so do
  dot leaders (``threshold......12`` -> ``threshold......<*>``) and calls
  (``chdir(/tmp/x)`` -> ``chdir(<*>)``, ``LOGIN(uid=0)`` -> ``LOGIN(uid=<*>)``);
* any other token holding a digit is masked as a whole (``blk_-6952``, ``node-246``,
  ``R02-M1-N0-C:J12``), except words with a single embedded digit such as ``ssh2`` or
  ``ipv6``, which are usually wording;
* weekday and month abbreviations (``Mon``, ``Jul``), which are parts of dates.

Brackets, quotes and trailing punctuation around a value stay: ``[10.0.0.1]`` -> ``[<*>]``,
``(uid=0)`` -> ``(uid=<*>)``. Results are cached per token (the cache is bounded), and the
common shapes (plain words, numbers, identifiers with a digit) skip the rule table.

>>> mask_token("10.251.73.220:50010")
'<*>'
>>> mask_token("(HWID=1973)")
'(HWID=<*>)'
>>> mask_token("ssh2")
'ssh2'
>>> mask_tokens("PacketResponder 1 for block blk_3886 terminating".split())
['PacketResponder', '<*>', 'for', 'block', '<*>', 'terminating']
"""

from __future__ import annotations

import re
from collections.abc import Callable

WILDCARD = "<*>"
#: tokens longer than this are masked whole, without running any rule on them (bounded work per line)
MAX_TOKEN_CHARS = 256
#: the per-token cache is cleared when it grows past this many entries
CACHE_SIZE = 200_000

#: Units that belong to the number before them (``93.0 B``, ``12 ms``): masked with it.
UNITS = frozenset("B KB MB GB TB PB KiB MiB GiB TiB kB ms us ns s sec msec % Hz KHz MHz GHz kbps Mbps".split())
_DATE_WORDS = frozenset("Mon Tue Wed Thu Fri Sat Sun Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec".split())
# Characters stripped from both ends of a token before the value rules run; they stay in the template.
_EDGE = "()[]{}<>\"'`,;!?"
_TRAIL = _EDGE + ".:"

#: The whole-value rules, in order, as ``(name, pattern)``; each must match the token's core entirely.
RULES: tuple[tuple[str, str], ...] = (
    ("url", r"[A-Za-z][A-Za-z0-9+.\-]*://\S+"),
    ("email", r"[^@\s/]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
    ("uuid", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    ("ipv4", r"/?(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?"),
    ("ipv6", r"\[?(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\]?(?::\d{1,5})?"),
    ("hex", r"(?:0[xX][0-9a-fA-F]+|[0-9a-fA-F]*\d[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*|[0-9a-fA-F]{8,})"),
    ("number", r"[-+]?(?:\d+(?:[.,]\d+)*|\.\d+)(?:[eE][-+]?\d+)?(?:[A-Za-z%]{1,3}|/s)?"),
    (
        "datetime",
        r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[T\s_-]?\d{1,2}(?::\d{2}){1,2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
    ),
    ("time", r"\d{1,2}(?::\d{2}){1,2}(?:[.,]\d+)?"),
    ("host", r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+\.(?:com|net|org|edu|gov|mil|int|info|biz|io|[a-z]{2})"),
    ("path", r"(?:[A-Za-z]:)?(?:\.{0,2}[\\/]|~/)[^\s]*|[^\s\\/]+(?:[\\/][^\s\\/]*){2,}"),
)
_WHOLE = re.compile("|".join(f"(?:{p})" for _, p in RULES))
_KEYED = re.compile(r"^([A-Za-z_][\w.\-]*)([=:])(.+)$")
# a word, a dot leader and a value: ``threshold........12`` keeps ``threshold........``
_LEADER = re.compile(r"^([A-Za-z_][\w\-]*\.{2,})([^.].*)$")
# a call: ``chdir(/tmp/x)`` keeps ``chdir(`` and masks its argument
_CALL = re.compile(r"^([A-Za-z_][\w.\-]*)\(([^()]+)$")
_WORDISH = re.compile(r"^[A-Za-z]{2,}\d(?:[A-Za-z]+)?$")
_DIGITS = re.compile(r"\d")
# characters that send a digit-free token through the value rules (paths, e-mails, keys, hosts)
_SUSPECT = re.compile(r"[=/\\@]|\..*\.")

_cache: dict[str, str] = {}
#: the cached tokens whose core is a unit (``ms``, ``KB,``): a unit is masked only after a masked number
_unit_tokens: set[str] = set()
_clears = [0]  # how many times the cache was cleared


def _mask_core(core: str) -> str:
    if _DIGITS.search(core):
        if core.isdecimal():
            return WILDCARD
        if ":" not in core and "=" not in core and "(" not in core:
            # no key: every rule and the digit rule give <*>, unless it is a word with one digit (ssh2)
            if _WORDISH.match(core) and sum(c.isdigit() for c in core) == 1 and not _WHOLE.fullmatch(core):
                return core
            leader = _LEADER.match(core) if ".." in core else None
            if leader and not _WHOLE.fullmatch(core):
                return leader.group(1) + _mask_value(leader.group(2))
            return WILDCARD
    call = _CALL.match(core) if "(" in core else None
    if call:
        return f"{call.group(1)}({_mask_value(call.group(2))}"
    if _WHOLE.fullmatch(core):
        return WILDCARD
    keyed = _KEYED.match(core)
    if keyed and keyed.group(2) == "=":
        return f"{keyed.group(1)}={WILDCARD}"
    if _DIGITS.search(core):
        if _WORDISH.match(core) and sum(c.isdigit() for c in core) == 1:
            return core
        if keyed and not _DIGITS.search(keyed.group(1)):  # key:value with a numeric value
            return f"{keyed.group(1)}:{_mask_value(keyed.group(3))}"
        return WILDCARD
    if core in _DATE_WORDS:
        return WILDCARD
    return core


def _mask_value(value: str) -> str:
    if not value:
        return value
    return _split_edges(value)


def _split_edges(token: str) -> str:
    core = token.lstrip(_EDGE)
    start = len(token) - len(core)
    core = core.rstrip(_TRAIL)
    if not core:
        return token
    return token[:start] + _mask_core(core) + token[start + len(core) :]


def _mask_uncached(token: str) -> str:
    if token.isdecimal():
        return WILDCARD
    if _DIGITS.search(token):
        # the common value shape, an identifier with a digit and no key, call or dot leader: masked whole
        core = token.lstrip(_EDGE)
        start = len(token) - len(core)
        core = core.rstrip(_TRAIL)
        if not (":" in core or "=" in core or "(" in core or ".." in core or _WORDISH.match(core)):
            return token[:start] + WILDCARD + token[start + len(core) :]
        return _split_edges(token)
    stripped = token.strip(_TRAIL)
    if stripped.isalpha() and "." not in token and stripped not in _DATE_WORDS:
        return token  # a plain word, the common case: no rule applies
    if _DIGITS.search(token) or _SUSPECT.search(token) or stripped in _DATE_WORDS:
        return _split_edges(token)
    return token


def _remember(token: str) -> str:
    """Mask a token not in the cache, and cache it."""
    if len(token) > MAX_TOKEN_CHARS:
        return WILDCARD
    out = _mask_uncached(token)
    if len(_cache) >= CACHE_SIZE:
        _cache.clear()
        _unit_tokens.clear()
        _clears[0] += 1
    _cache[token] = out
    if token.rstrip(_TRAIL) in UNITS:
        _unit_tokens.add(token)
    return out


def mask_token(token: str) -> str:
    """The token with its variable parts replaced by ``<*>`` (cached)."""
    hit = _cache.get(token)
    return hit if hit is not None else _remember(token)


def mask_tokens(tokens: list[str]) -> list[str]:
    """:func:`mask_token` over a list of tokens; a unit right after a masked number is masked too."""
    get: Callable[[str], str | None] = _cache.get
    found = list(map(get, tokens))
    clears = _clears[0]
    out: list[str] = found  # type: ignore[assignment]  # no None left after the next line
    if None in found:
        out = [hit if hit is not None else _remember(token) for hit, token in zip(found, tokens, strict=True)]
    # _unit_tokens holds every cached unit, so a line without one needs no unit pass (unless the
    # cache was cleared while this line was masked)
    if (_unit_tokens and not _unit_tokens.isdisjoint(tokens)) or clears != _clears[0]:
        for i in range(1, len(out)):
            if out[i - 1] == WILDCARD and out[i] != WILDCARD:
                core = tokens[i].rstrip(_TRAIL)
                if core in UNITS:
                    out[i] = WILDCARD + tokens[i][len(core) :]
    return out


def mask_text(text: str) -> str:
    """The whitespace-normalised text with every token masked.

    >>> mask_text("Failed password for root from 10.0.0.1 port 22 ssh2")
    'Failed password for root from <*> port <*> ssh2'
    """
    return " ".join(mask_tokens(text.split()))
