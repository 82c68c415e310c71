"""Generic variable masking: the tokens of a log message that are data, not wording, become ``<*>``.

Masking runs per whitespace-separated token before template mining and decides much of the
parser's accuracy. Every rule here is generic (nothing is specific to one system):

* whole values: IPv4 and IPv6 addresses (with an optional port), UUIDs, URLs, e-mail addresses,
  file paths (two or more separators), hex numbers (``0x1f``) and long hex ids, numbers with an
  optional sign, decimals, exponent and unit (``12ms``, ``3.5GB``, ``-7``), dates and times;
* ``key=value`` pairs keep the key and mask the value (``uid=0`` -> ``uid=<*>``);
* any other token holding a digit is masked as a whole (``blk_-6952``, ``node-246``,
  ``R02-M1-N0-C:J12``), except identifiers with a single embedded digit such as ``ssh2``,
  ``jk2_init`` or ``ipv6``, which are usually wording;
* weekday and month abbreviations (``Mon``, ``Jul``), which are parts of dates.

Brackets, quotes and trailing punctuation around a value stay: ``[10.0.0.1]`` -> ``[<*>]``,
``(uid=0)`` -> ``(uid=<*>)``. Results are cached per token (the cache is bounded).

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
_WORDISH = re.compile(r"^[A-Za-z]{2,}\d(?:[A-Za-z]+)?$")
_DIGITS = re.compile(r"\d")

_cache: dict[str, str] = {}


def _mask_core(core: str) -> str:
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
    start, end = 0, len(token)
    while start < end and token[start] in _EDGE:
        start += 1
    while end > start and token[end - 1] in _TRAIL:
        end -= 1
    core = token[start:end]
    if not core:
        return token
    return token[:start] + _mask_core(core) + token[end:]


def mask_token(token: str) -> str:
    """The token with its variable parts replaced by ``<*>`` (cached)."""
    hit = _cache.get(token)
    if hit is not None:
        return hit
    if len(token) > MAX_TOKEN_CHARS:
        return WILDCARD
    out = (
        _split_edges(token)
        if (
            _DIGITS.search(token)
            or "=" in token
            or "/" in token
            or "\\" in token
            or "@" in token
            or token.count(".") >= 2
            or token.strip(_TRAIL) in _DATE_WORDS
        )
        else token
    )
    if len(_cache) >= CACHE_SIZE:
        _cache.clear()
    _cache[token] = out
    return out


def mask_tokens(tokens: list[str]) -> list[str]:
    """:func:`mask_token` over a list of tokens; a unit right after a masked number is masked too."""
    get = _cache.get
    out = []
    previous = ""
    for tok in tokens:
        hit = get(tok)
        if hit is None:
            hit = mask_token(tok)
        if previous == WILDCARD and hit != WILDCARD:
            core = tok.rstrip(_TRAIL)
            if core in UNITS:
                hit = WILDCARD + tok[len(core) :]
        out.append(hit)
        previous = hit
    return out


def mask_text(text: str) -> str:
    """The whitespace-normalised text with every token masked.

    >>> mask_text("Failed password for root from 10.0.0.1 port 22 ssh2")
    'Failed password for root from <*> port <*> ssh2'
    """
    return " ".join(mask_tokens(text.split()))
