"""An online log template miner: masked patterns, a fit-or-merge online step and a statistical consolidation.

How a message becomes a template:

1. **Pattern.** The message is split on whitespace and every token masked
   (:mod:`mlctl.logs.masking`); the masked token sequence is the message's *pattern*. Messages
   with the same pattern always share a template, so a known pattern is one dictionary look-up.
2. **Online step.** A new pattern joins the cluster (of patterns of the same token count) whose
   template it fits (equal at every constant position); failing that, the most similar cluster if
   the share of equal positions reaches ``similarity`` (the template then generalises: the
   differing positions become ``<*>``, as in Drain); failing that, it starts a new cluster.
3. **Consolidation.** Now and then (every time the number of patterns has doubled, and at the
   end of :meth:`TemplateMiner.parse`) the clusters are rebuilt from all patterns seen, a pure
   function of the patterns and their line counts. The patterns of one token count are first
   grouped by their *anchor*, the constant tokens that share the pattern's most common token
   frequency (Brain's longest common pattern); each group is then split top down on the position
   with the fewest distinct values, as long as that position looks like wording:

   * at most ``split_values`` distinct values (``first_split_values`` for the first token, which
     is usually the event's verb or name: ``boot (command 1)``, ``wait (command 2)``);
   * none of them masked, except constant punctuation beside masked values (``****`` among
     numbers); partly masked values count when their constant parts differ (``(uid=<*>)`` and
     ``LOGIN(uid=<*>)``), not when one is the other with a given value (``()`` and ``(<*>)``);
   * not *shared*: a column whose values also fill a column of another anchor group carries the
     same data through several messages (the users of ``session opened for user X`` and
     ``session closed for user X``), so it is a variable however few its values.

   A position with more values is a variable. This is what tells ``Starting X`` from
   ``Ending X`` while ``Invalid user <*>`` stays one template.

Identifiers: a cluster's ``cluster_id`` is the index of its oldest pattern; the ``event_id`` is a
hash of the template text (``E`` + 8 hex digits), the same in every run and every process for the
same template. Templates may generalise as more lines arrive, so the *final* assignment of a line
is the one after the last consolidation: :meth:`TemplateMiner.parse` returns final assignments,
and :meth:`TemplateMiner.match` gives a line's current one at any time.

Memory is bounded: messages longer than ``max_tokens`` tokens are mined on their first
``max_tokens - 1`` tokens plus one ``<*>`` for the rest, tokens over 256 characters are masked
whole, and at most ``max_patterns`` patterns are kept (past that, new patterns are matched to
the existing clusters online and not stored).

The model is saved as versioned JSON (:meth:`TemplateMiner.save`, :meth:`TemplateMiner.load`).

>>> m = TemplateMiner()
>>> matches = m.parse(["Invalid user bob from 10.0.0.1", "Invalid user ann from 10.0.0.2",
...                    "Invalid user joe from 10.0.0.9", "Invalid user kim from 10.0.0.7",
...                    "Invalid user eve from 10.0.0.5"])
>>> matches[0].template
'Invalid user <*> from <*>'
>>> matches[1].params
['ann', '10.0.0.2']
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import eq, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from mlctl.core.errors import ConfigError, NotFound, UsageError
from mlctl.logs.masking import WILDCARD, mask_tokens

MODEL_FORMAT = "mlctl-template-model"
MODEL_VERSION = 1


class Match(NamedTuple):
    """A message's template: ``event_id``, ``template`` (variables as ``<*>``), ``params``, ``cluster_id``."""

    event_id: str
    template: str
    params: list[str]
    cluster_id: int


@dataclass
class TemplateInfo:
    """One template of the model, as listed by :meth:`TemplateMiner.templates`."""

    event_id: str
    template: str
    size: int  # lines seen
    first_seen: float  # seconds since the epoch (ingest time, or the time given to add())
    cluster_id: int


def event_id_for(template: str) -> str:
    """The stable event id of a template text: ``E`` and 8 hex digits of its hash.

    >>> event_id_for("Invalid user <*> from <*>") == event_id_for("Invalid user <*> from <*>")
    True
    """
    return "E" + hashlib.blake2b(template.encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()


_SEEN_SIZE = 100_000
_SEEN_MAX_CHARS = 4096

_PARAMS: dict[str, tuple[type, float, float]] = {
    "similarity": (float, 0.0, 1.0),
    "split_values": (int, 1, 10_000),
    "first_split_values": (int, 1, 10_000),
    "max_tokens": (int, 2, 100_000),
    "max_patterns": (int, 1, 100_000_000),
}


class TemplateMiner:
    """Mines templates from log messages, one at a time (:meth:`add`) or in batches (:meth:`parse`)."""

    def __init__(
        self,
        *,
        similarity: float = 0.5,
        split_values: int = 4,
        first_split_values: int = 16,
        max_tokens: int = 128,
        max_patterns: int = 200_000,
    ) -> None:
        self.similarity = similarity
        self.split_values = split_values
        self.first_split_values = first_split_values
        self.max_tokens = max_tokens
        self.max_patterns = max_patterns
        self._validate()
        self._index: dict[tuple[str, ...], int] = {}  # pattern -> pattern number
        self._tokens: list[tuple[str, ...]] = []  # pattern number -> masked tokens
        self._count: list[int] = []
        self._first: list[float] = []
        self._cluster_of: list[int] = []  # pattern number -> cluster id
        self._templates: dict[int, list[str]] = {}  # cluster id -> template tokens
        self._by_len: dict[int, list[int]] = {}  # token count -> cluster ids
        self._overflow: dict[int, int] = {}  # cluster id -> lines counted past max_patterns
        self._consolidated_at = 0
        self._text: dict[int, tuple[str, str]] = {}  # cluster id -> (template, event id), cached
        self._regex: dict[str, re.Pattern[str]] = {}
        self._seen: dict[str, int] = {}  # recent message -> pattern number (a bounded cache)
        self._slots: dict[int, list[tuple[int, re.Pattern[str] | None]]] = {}  # cluster -> variable positions
        # cluster -> (getter of its constant positions, their values): does a pattern fit the template?
        self._fitters: dict[int, tuple[Callable[[tuple[str, ...]], Any] | None, Any]] = {}

    def _validate(self) -> None:
        for name, (kind, lo, hi) in _PARAMS.items():
            value: Any = getattr(self, name)
            typed = isinstance(value, kind) and not isinstance(value, bool)
            if not typed or not lo <= value <= hi:
                raise UsageError(
                    f"invalid miner parameter {name}={value!r}",
                    hint=f"{name} must be a {kind.__name__} in [{lo}, {hi}]",
                )

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PARAMS}

    # -- mining -------------------------------------------------------------------------------

    def _pattern(self, content: str) -> tuple[str, ...]:
        tokens = content.split()
        if len(tokens) >= self.max_tokens:
            tokens = tokens[: self.max_tokens - 1]
            return (*mask_tokens(tokens), WILDCARD)
        return tuple(mask_tokens(tokens))

    def learn(self, content: str, *, at: float | None = None) -> int:
        """Mine one message; returns its cluster id (its template may still generalise)."""
        number = self._seen.get(content)
        if number is None:
            tokens = content.split()
            if len(tokens) < self.max_tokens:
                key = tuple(mask_tokens(tokens))
            else:
                key = self._pattern(content)
            number = self._index.get(key)
            if number is None:
                return self._learn_new(key, time.time() if at is None else at)
            if len(content) <= _SEEN_MAX_CHARS:
                if len(self._seen) >= _SEEN_SIZE:
                    self._seen.clear()
                self._seen[content] = number
        self._count[number] += 1
        return self._cluster_of[number]

    def _learn_number(self, content: str, at: float | None) -> int | None:
        """Like :meth:`learn`, returning the pattern number (None when not stored, past max_patterns)."""
        number = self._seen.get(content)
        if number is None:
            key = self._pattern(content)
            number = self._index.get(key)
            if number is None:
                self._learn_new(key, time.time() if at is None else at)
                return self._index.get(key)
            if len(content) <= _SEEN_MAX_CHARS:
                if len(self._seen) >= _SEEN_SIZE:
                    self._seen.clear()
                self._seen[content] = number
        self._count[number] += 1
        return number

    def _learn_new(self, key: tuple[str, ...], at: float) -> int:
        cid = self._fit(key)
        if len(self._tokens) >= self.max_patterns:  # bounded: match, count, but do not store the pattern
            if cid is None:
                cid = self._best_cluster(key)
            if cid is not None:
                self._overflow[cid] = self._overflow.get(cid, 0) + 1
                return cid
        number = len(self._tokens)
        self._index[key] = number
        self._tokens.append(key)
        self._count.append(1)
        self._first.append(at)
        if cid is None:
            cid = self._merge_similar(key, number)
        self._cluster_of.append(cid)
        if len(self._tokens) >= max(32, self._consolidated_at * 2):
            self.consolidate()
            return self._cluster_of[number]
        return cid

    def _set_template(self, cid: int, template: list[str]) -> None:
        """Store a cluster's template and the quick test of whether a pattern fits it."""
        self._templates[cid] = template
        fixed = [i for i, t in enumerate(template) if t != WILDCARD]
        if not fixed:
            self._fitters[cid] = (None, None)
        else:
            self._fitters[cid] = (itemgetter(*fixed), itemgetter(*fixed)(template))
        self._text.pop(cid, None)
        self._slots.pop(cid, None)

    def _fit(self, key: tuple[str, ...]) -> int | None:
        fitters = self._fitters
        for cid in self._by_len.get(len(key), ()):
            get, fixed = fitters[cid]
            if get is None or get(key) == fixed:
                return cid
        return None

    def _best_cluster(self, key: tuple[str, ...]) -> int | None:
        best, best_same = None, -1
        templates = self._templates
        for cid in self._by_len.get(len(key), ()):
            same = sum(map(eq, templates[cid], key))
            if same > best_same:
                best, best_same = cid, same
        return best if best_same >= self.similarity * (len(key) or 1) else None

    def _merge_similar(self, key: tuple[str, ...], number: int) -> int:
        cid = self._best_cluster(key)
        if cid is None:
            cid = number
            self._set_template(cid, list(key))
            self._by_len.setdefault(len(key), []).append(cid)
        else:
            template = [t if t == k else WILDCARD for t, k in zip(self._templates[cid], key, strict=True)]
            self._set_template(cid, template)
        return cid

    def consolidate(self) -> None:
        """Rebuild the clusters from every pattern seen (see the module docstring)."""
        by_len: dict[int, list[int]] = {}
        for number, key in enumerate(self._tokens):
            by_len.setdefault(len(key), []).append(number)
        anchored = {length: self._anchor_groups(numbers) for length, numbers in sorted(by_len.items())}
        shared = self._shared_columns(anchored)
        self._templates, self._by_len, self._text, self._slots, self._fitters = {}, {}, {}, {}, {}
        self._cluster_of = [0] * len(self._tokens)
        for length, groups in anchored.items():
            for index, anchor_group in enumerate(groups):
                for group in self._split(anchor_group, shared.get((length, index), frozenset())):
                    cid = min(group)
                    self._set_template(cid, self._template_of(group))
                    self._by_len.setdefault(length, []).append(cid)
                    for number in group:
                        self._cluster_of[number] = cid
        if self._overflow:  # lines past max_patterns follow the oldest pattern of their old cluster
            moved: dict[int, int] = {}
            for old, extra in self._overflow.items():
                new = self._cluster_of[old] if old < len(self._cluster_of) else old
                moved[new] = moved.get(new, 0) + extra
            self._overflow = moved
        self._consolidated_at = len(self._tokens)

    def _anchor_groups(self, numbers: list[int]) -> list[list[int]]:
        """Group patterns by their anchor: the constant tokens sharing the most common frequency (as in Brain)."""
        if len(numbers) == 1:
            return [numbers]
        keys = [self._tokens[n] for n in numbers]
        weights = [self._count[n] for n in numbers]
        freqs: list[dict[str, int]] = []
        for col in zip(*keys, strict=True):
            freq: dict[str, int] = {}
            for token, weight in zip(col, weights, strict=True):
                freq[token] = freq.get(token, 0) + weight
            freq[WILDCARD] = 0  # a masked token is never part of an anchor
            freqs.append(freq)
        groups: dict[tuple[tuple[int, str], ...], list[int]] = {}
        for number, key in zip(numbers, keys, strict=True):
            fs = [freqs[i][t] for i, t in enumerate(key)]
            present = [f for f in fs if f]
            if present:
                root = max(set(present), key=lambda f: (present.count(f), f))
                anchor = tuple(i for i, f in enumerate(fs) if f == root)
            else:
                anchor = ()
            groups.setdefault(tuple((i, key[i]) for i in anchor), []).append(number)
        return list(groups.values())

    def _shared_columns(self, anchored: dict[int, list[list[int]]]) -> dict[tuple[int, int], frozenset[int]]:
        """Columns whose few values also fill a column of another template: data, not wording.

        A column that looks like wording (a handful of plain words) but shares at least two of its
        values with a column of a different anchor group carries the same data through several
        messages (user names in ``session opened for user X`` and ``session closed for user X``).
        """
        columns: dict[tuple[int, int, int], frozenset[str]] = {}
        where: dict[str, list[tuple[int, int, int]]] = {}
        for length, groups in anchored.items():
            for index, group in enumerate(groups):
                if len(group) < 2:
                    continue
                for pos, col in enumerate(zip(*(self._tokens[n] for n in group), strict=True)):
                    if pos == 0:
                        continue
                    values = frozenset(col)
                    if 1 < len(values) <= self.split_values and not any(WILDCARD in v for v in values):
                        columns[length, index, pos] = values
                        for v in values:
                            where.setdefault(v, []).append((length, index, pos))
        out: dict[tuple[int, int], set[int]] = {}
        for (length, index, pos), values in columns.items():
            hits: Counter[tuple[int, int, int]] = Counter()
            for v in values:
                hits.update(c for c in where[v] if c[:2] != (length, index))
            if hits and max(hits.values()) >= 2:
                out.setdefault((length, index), set()).add(pos)
        return {k: frozenset(v) for k, v in out.items()}

    def _split(self, numbers: list[int], skip: frozenset[int]) -> list[list[int]]:
        """An anchor group split top down on its wording columns (fewest values first)."""
        out: list[list[int]] = []
        stack = [numbers]
        tokens = self._tokens
        while stack:
            group = stack.pop()
            if len(group) == 1:
                out.append(group)
                continue
            best: tuple[int, int] | None = None  # (distinct values, position)
            for pos, col in enumerate(zip(*(tokens[n] for n in group), strict=True)):
                values = set(col)
                k = len(values)
                if k > 1 and pos not in skip and (best is None or k < best[0]) and self._is_wording(values, pos):
                    best = (k, pos)
            if best is None:
                out.append(group)
                continue
            parts: dict[str, list[int]] = {}
            at = best[1]
            for number in group:
                parts.setdefault(tokens[number][at], []).append(number)
            stack.extend(parts.values())
        return out

    def _is_wording(self, values: set[str], pos: int) -> bool:
        """Whether a column's values look like wording (split on them) rather than a variable."""
        if len(values) > (self.first_split_values if pos == 0 else self.split_values):
            return False
        if WILDCARD in values:  # masked values beside constant punctuation (``****``) only
            return all(v == WILDCARD or not any(c.isalnum() or c == "<" for c in v) for v in values)
        # partly masked values are wording when their constant parts differ ("(uid=<*>)" and
        # "LOGIN(uid=<*>)"), not when one is another with a value given ("(<*>)" and "()")
        return not any(self._token_regex(v).match(w) for v in values if WILDCARD in v for w in values if w != v)

    def _template_of(self, group: list[int]) -> list[str]:
        first = list(self._tokens[group[0]])
        for number in group[1:]:
            for i, token in enumerate(self._tokens[number]):
                if first[i] != token:
                    first[i] = WILDCARD
        return first

    # -- results ------------------------------------------------------------------------------

    def template(self, cluster_id: int) -> str:
        """The current template text of a cluster."""
        return self._describe(cluster_id)[0]

    def event_id(self, cluster_id: int) -> str:
        """The current event id of a cluster (a hash of its template)."""
        return self._describe(cluster_id)[1]

    def _describe(self, cid: int) -> tuple[str, str]:
        hit = self._text.get(cid)
        if hit is None:
            if cid not in self._templates:
                raise NotFound(f"no template cluster {cid}", hint="cluster ids come from add(), learn() or parse()")
            text = " ".join(self._templates[cid])
            hit = self._text[cid] = (text, event_id_for(text))
        return hit

    def cluster_of(self, content: str) -> int | None:
        """The current cluster of a message already seen (or fitting a template), without learning it."""
        key = self._pattern(content)
        number = self._index.get(key)
        return self._cluster_of[number] if number is not None else self._fit(key)

    def params(self, content: str, cluster_id: int) -> list[str]:
        """The values in ``content`` at the variable positions of the cluster's template."""
        template = self._templates.get(cluster_id)
        if template is None:
            raise NotFound(f"no template cluster {cluster_id}", hint="cluster ids come from add(), learn() or parse()")
        slots = self._slots.get(cluster_id)
        if slots is None:
            slots = self._slots[cluster_id] = [
                (i, None if t == WILDCARD else self._token_regex(t)) for i, t in enumerate(template) if WILDCARD in t
            ]
        if not slots:
            return []
        tokens = content.split()
        if len(tokens) >= self.max_tokens:
            tokens = [*tokens[: self.max_tokens - 1], " ".join(tokens[self.max_tokens - 1 :])]
        n = len(tokens)
        out: list[str] = []
        for i, rx in slots:
            if i >= n:
                break
            if rx is None:
                out.append(tokens[i])
            else:
                m = rx.match(tokens[i])
                if m:
                    out.extend(m.groups())
        return out

    def _token_regex(self, token: str) -> re.Pattern[str]:
        rx = self._regex.get(token)
        if rx is None:
            rx = self._regex[token] = re.compile(
                "(.*?)".join(re.escape(p) for p in token.split(WILDCARD)) + r"\Z", re.DOTALL
            )
        return rx

    def match(self, content: str, cluster_id: int) -> Match:
        """A :class:`Match` for a message of a known cluster (its current template)."""
        text, eid = self._describe(cluster_id)
        return Match(eid, text, self.params(content, cluster_id), cluster_id)

    def add(self, content: str, *, at: float | None = None) -> Match:
        """Mine one message and return its current :class:`Match` (online use)."""
        return self.match(content, self.learn(content, at=at))

    def parse(self, contents: Iterable[str], *, at: float | None = None) -> list[Match]:
        """Mine a batch and return every message's *final* match (after a consolidation)."""
        lines = list(contents)
        numbers = [self._learn_number(content, at) for content in lines]
        self.consolidate()
        out: list[Match] = []
        done: dict[str, Match] = {}  # a repeated message has the same final match (its own params list)
        for content, number in zip(lines, numbers, strict=True):
            hit = done.get(content)
            if hit is None:
                hit = self.match(content, self._final(content, number))
                if len(done) < _SEEN_SIZE and len(content) <= _SEEN_MAX_CHARS:
                    done[content] = hit
                out.append(hit)
            else:
                out.append(Match(hit.event_id, hit.template, list(hit.params), hit.cluster_id))
        return out

    def assign(self, contents: Sequence[str], *, at: float | None = None) -> list[int]:
        """Mine a batch, consolidate, and give every message its *final* cluster id, in order.

        The batch step of ``classify-logs``: :meth:`learn` each message, :meth:`consolidate`, then
        each message's cluster (a message not stored, past ``max_patterns``, is fitted to the
        clusters or learned again). :meth:`match` gives a message's template and parameters.
        """
        learn, seen, count = self._learn_number, self._seen, self._count
        numbers: list[int | None] = []
        keep = numbers.append
        for content in contents:
            number = seen.get(content)
            if number is None:  # not a recent message: its pattern (or a new one)
                keep(learn(content, at))
            else:  # a recent message, as _learn_number counts it
                count[number] += 1
                keep(number)
        self.consolidate()
        cluster_of = self._cluster_of
        out: list[int] = []
        append = out.append
        for content, number in zip(contents, numbers, strict=True):
            if number is not None:
                append(cluster_of[number])
                continue
            cid = self.cluster_of(content)
            if cid is None:
                cid = self.learn(content, at=at)
            cluster_of = self._cluster_of  # a learn past the bound may have consolidated
            append(cid)
        return out

    def _final(self, content: str, number: int | None) -> int:
        if number is not None:
            return self._cluster_of[number]
        cid = self._fit(self._pattern(content))
        if cid is None:
            cid = self._best_cluster(self._pattern(content))
        if cid is None:  # cannot happen for a learned message; keep the contract anyway
            raise NotFound("message was not learned", hint="call learn() or add() first")
        return cid

    def templates(self) -> list[TemplateInfo]:
        """Every current template with its size and first-seen time, most frequent first."""
        size: dict[int, int] = dict(self._overflow)
        first: dict[int, float] = {}
        for number, cid in enumerate(self._cluster_of):
            size[cid] = size.get(cid, 0) + self._count[number]
            first[cid] = min(first.get(cid, self._first[number]), self._first[number])
        out = [
            TemplateInfo(self.event_id(cid), self.template(cid), size.get(cid, 0), first.get(cid, 0.0), cid)
            for cid in self._templates
        ]
        return sorted(out, key=lambda t: (-t.size, t.cluster_id))

    def drift(self, interval_s: float) -> list[dict[str, Any]]:
        """New templates per time bucket: ``[{"start": t, "new_templates": n, "event_ids": [...]}, ...]``.

        A template's time is the first-seen time of its oldest pattern (ingest time, or the ``at``
        given to :meth:`add`). Buckets are ``interval_s`` wide, aligned to multiples of it; empty
        buckets between the first and the last are listed with ``new_templates`` 0.
        """
        if interval_s <= 0:
            raise UsageError(f"drift interval must be positive, got {interval_s}", hint="e.g. 3600 for hourly")
        buckets: dict[int, list[str]] = {}
        for info in self.templates():
            buckets.setdefault(int(info.first_seen // interval_s), []).append(info.event_id)
        if not buckets:
            return []
        return [
            {"start": b * interval_s, "new_templates": len(buckets.get(b, [])), "event_ids": sorted(buckets.get(b, []))}
            for b in range(min(buckets), max(buckets) + 1)
        ]

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "params": self.get_params(),
            "patterns": [
                {"tokens": list(key), "count": self._count[n], "first_seen": self._first[n]}
                for n, key in enumerate(self._tokens)
            ],
            "overflow": [{"pattern": cid, "count": extra} for cid, extra in sorted(self._overflow.items())],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, source: str = "template model") -> TemplateMiner:
        if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{source} is not an mlctl template model", hint="save one with TemplateMiner.save()")
        version = doc.get("version")
        if version != MODEL_VERSION:
            raise ConfigError(
                f"{source} has template-model version {version!r}; this mlctl reads version {MODEL_VERSION}",
                hint="re-train the template model with this mlctl, or upgrade mlctl",
            )
        try:
            miner = cls(**doc.get("params", {}))
            for item in doc["patterns"]:
                key = tuple(str(t) for t in item["tokens"])
                miner._index[key] = len(miner._tokens)
                miner._tokens.append(key)
                miner._count.append(int(item["count"]))
                miner._first.append(float(item["first_seen"]))
                miner._cluster_of.append(0)
            miner._overflow = {int(o["pattern"]): int(o["count"]) for o in doc.get("overflow", [])}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source} is malformed: {exc}", hint="re-train the template model") from exc
        miner.consolidate()
        return miner

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (format version :data:`MODEL_VERSION`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TemplateMiner:
        """Read a model written by :meth:`save`; refuses other formats and versions with a ConfigError."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise NotFound(
                f"template model {path} does not exist", hint="train one with `classify-logs parse`"
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read template model {path}: {exc}", hint="re-train the template model") from exc
        return cls.from_dict(doc, source=str(path))

    def __len__(self) -> int:
        return len(self._templates)
