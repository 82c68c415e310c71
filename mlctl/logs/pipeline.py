"""The project's log pipeline: split with the log format, mine templates, classify, route.

:class:`LogPipeline` holds what ``classify-logs`` commands share: the log format (given, or
``auto``: detected from the first batch's first lines, and said on stderr), the template
miner (loaded from ``logs.templates`` and saved back, so templates and their ids are
versioned with the project), the classifier (``logs.model_dir``, reloaded when a retrain
replaces it), the rules, and the router built from ``logs.sinks`` and ``logs.routes``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.core.config import LoadedConfig
from mlctl.core.output import log, message
from mlctl.logs.record import UNPARSED, LogRecord

if TYPE_CHECKING:
    from mlctl.logs.autoformat import Detection
    from mlctl.logs.classify import LogClassifier
    from mlctl.logs.results import ClassifiedLines, Document, ParsedLines
    from mlctl.logs.rules import Rule

TIME_FIELDS = ("Timestamp", "timestamp", "Time", "time", "ts", "@timestamp", "Date")


def resolve_sink_url(url: str, root: Path) -> str:
    """Relative paths in sink URLs are relative to the project root.

    >>> resolve_sink_url("sqlite:///.mlctl/logs.db", Path("/p"))
    'sqlite:////p/.mlctl/logs.db'
    >>> resolve_sink_url(".mlctl/logs/a.jsonl", Path("/p"))
    '/p/.mlctl/logs/a.jsonl'
    >>> resolve_sink_url("kafka://127.0.0.1:9092/logs", Path("/p"))
    'kafka://127.0.0.1:9092/logs'
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(root / url[len("sqlite:///") :])
    if url.startswith("file://") and not url.startswith("file:///"):
        return "file://" + str(root / url[len("file://") :])
    import urllib.parse

    scheme = urllib.parse.urlsplit(url).scheme
    if not scheme and url not in ("stdout", "-", "memory") and not os.path.isabs(url):
        return str(root / url)
    return url


def project_path(loaded: LoadedConfig, relative: str | Path) -> Path | None:
    """``relative`` under the project root; ``None`` outside a project (nothing is kept there)."""
    return loaded.root / relative if loaded.project_file is not None else None


def sink_urls(loaded: LoadedConfig, *, sink_override: str | None = None) -> dict[str, str]:
    """The sinks a router writes to, by name, with relative paths resolved against the root."""
    if sink_override is not None:
        return {"out": resolve_sink_url(sink_override, loaded.root)}
    return {name: resolve_sink_url(url, loaded.root) for name, url in loaded.config.logs.sinks.items()}


def build_router(loaded: LoadedConfig, *, sink_override: str | None = None) -> Any:
    """The router of ``logs.sinks`` / ``logs.routes`` (or everything to ``sink_override``)."""
    from mlctl.logs.sinks import Router, make_sink

    urls = sink_urls(loaded, sink_override=sink_override)
    if sink_override is not None:
        return Router.single(make_sink(urls["out"], name="out"))
    sinks = {name: make_sink(url, name=name) for name, url in urls.items()}
    return Router(sinks, [(r.class_set(), r.sinks) for r in loaded.config.logs.routes])


class LogPipeline:
    """Parse and classify batches of log lines the same way in every command."""

    def __init__(self, loaded: LoadedConfig, *, log_format: str | None = None, rules: str | None = None,
                 use_model: bool = True, model_dir: str | Path | None = None,
                 templates: str | Path | None = None) -> None:  # fmt: skip
        from mlctl.logs.formats import LogFormat
        from mlctl.logs.miner import TemplateMiner

        spec = loaded.config.logs
        self.loaded = loaded
        # an empty --log-format is an error, not "use the configured one"; neither given: auto,
        # detected from the first lines of the first batch (see mlctl.logs.autoformat)
        fmt = log_format if log_format is not None else spec.log_format or spec.preset or "auto"
        self.format = LogFormat.resolve(fmt)
        #: what auto-detection chose, once it ran (``None`` with a given format)
        self.detection: Detection | None = None
        #: where the template model is loaded from and saved to: ``templates`` as given, else the
        #: project's ``logs.templates``; outside a project, nowhere (a model of this run only)
        self.templates_path: Path | None = (
            Path(templates) if templates is not None else project_path(loaded, spec.templates)
        )
        path = self.templates_path
        self.miner = TemplateMiner.load(path) if path is not None and path.is_file() else TemplateMiner()
        rules_path = rules or spec.rules
        self.rules: list[Rule] = []
        if rules_path:
            from mlctl.logs.rules import load_rules

            self.rules = load_rules(loaded.root / rules_path)
        self.model_dir = loaded.root / (model_dir or spec.model_dir)
        self.use_model = use_model
        self.model: LogClassifier | None = None
        self._model_stamp: float | None = None
        self._checked = 0.0
        self.reloads = 0
        self._load_model()

    # -- the classifier, reloaded when a retrain replaces it ---------------------------------------
    def _stamp(self) -> float | None:
        try:
            from mlctl.logs.classify import META_FILE

            return (self.model_dir / META_FILE).stat().st_mtime
        except OSError:
            return None

    def _load_model(self) -> None:
        if not self.use_model:
            return
        stamp = self._stamp()
        if stamp is None or stamp == self._model_stamp:
            return
        from mlctl.logs.classify import LogClassifier

        self.model = LogClassifier.load(self.model_dir)
        if self._model_stamp is not None:
            self.reloads += 1
            log(f"classifier reloaded from {self.model_dir}")
        self._model_stamp = stamp

    def maybe_reload(self, every_s: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._checked >= every_s:
            self._checked = now
            self._load_model()

    # -- processing -----------------------------------------------------------------------------
    def _detect(self, records: Sequence[LogRecord]) -> None:
        """Replace an ``auto`` format with the one detected from the batch's first lines (said on stderr)."""
        from mlctl.logs.autoformat import detect_format

        if not any(r.raw.strip() for r in records):
            return  # nothing to detect from yet: wait for a batch with lines
        self.detection = detect_format(r.raw for r in records)
        self.format = self.detection.format
        message(self.detection.describe())

    def split(self, records: Iterable[LogRecord]) -> list[LogRecord]:
        """Fill in headers, content and timestamp from the raw line (or mark it unparsed).

        With an ``auto`` format, the first batch that has lines decides the format.
        """
        if self.format.kind == "auto":
            records = list(records)
            self._detect(records)
            if self.format.kind == "auto":  # only blank lines so far
                for record in records:
                    record.parsed, record.event_id = False, UNPARSED
                return records
        out = []
        for record in records:
            parts = self.format.split(record.raw) if record.raw.strip() else None
            if parts is None:
                record.parsed, record.event_id = False, UNPARSED
            else:
                record.headers, record.content = parts
                record.parsed = True
                record.timestamp = next((record.headers[k] for k in TIME_FIELDS if record.headers.get(k)), None)
            out.append(record)
        return out

    def mine(self, records: Sequence[LogRecord]) -> None:
        """Learn the batch's contents, then give every parsed record its (batch-final) template."""
        miner = self.miner
        parsed = [record for record in records if record.parsed]
        for record, cid in zip(parsed, miner.assign([r.content for r in parsed]), strict=True):
            m = miner.match(record.content, cid)
            record.event_id, record.template, record.params = m.event_id, m.template, m.params

    def parse(self, lines: Iterable[tuple[int, str]], *, save_templates: bool = True) -> ParsedLines:
        """Parse numbered lines (as :func:`read_input` gives) into a :class:`ParsedLines` result.

        The batch is split and mined as :meth:`process` does (same templates, same ids), without a
        record per line: the result works out each row's template and parameters as it is written.
        The template model is saved afterwards unless ``save_templates`` is false; lines that do not
        match the log format are counted in a warning on stderr.
        """
        from mlctl.logs.results import ParsedLines

        if self.format.kind == "auto":
            lines = self._detect_head(lines)
        items: list[tuple[int, tuple[str, ...] | None, str]] = []
        contents: list[str] = []
        append, keep = items.append, contents.append
        if self.format.kind == "auto":  # nothing but blank lines: nothing to detect from
            for line_id, _ in lines:
                append((line_id, None, ""))
        else:
            split = self.format.splitter()
            for line_id, text in lines:
                parts = split(text)
                if parts is None:
                    append((line_id, None, ""))
                else:
                    append((line_id, parts[0], parts[1]))
                    keep(parts[1])
        clusters = self.miner.assign(contents)
        if save_templates:
            self.save_templates()
        result = ParsedLines(items, clusters, self.miner, self.header_fields, self.format_report())
        if result.unparsed:
            message(f"warning: {result.unparsed} of {len(items)} line(s) did not match the log format "
                    "(EventId unparsed)")  # fmt: skip
        return result

    def _detect_head(self, lines: Iterable[tuple[int, str]]) -> Iterable[tuple[int, str]]:
        """Detect an ``auto`` format from the first non-blank lines; the lines, from the first, come back."""
        from mlctl.logs.autoformat import split_head

        head, every = split_head(lines)
        self._detect([LogRecord(line_id, text, defer_id=True) for line_id, text in head])
        return every

    def process(self, records: Sequence[LogRecord], *, classify_lines: bool = True) -> list[LogRecord]:
        """Split, mine and (optionally) classify a batch; every input record comes back."""
        batch = self.split(records)
        self.mine(batch)
        if classify_lines:
            self.maybe_reload()
            from mlctl.logs.classify import classify

            classify(batch, model=self.model, rules=self.rules)
        return batch

    def save_templates(self) -> Path | None:
        """Save the template model; ``None`` (nothing written) outside a project without a path."""
        if self.templates_path is None:
            log("not in a project: the template model is not saved (pass --templates FILE to keep it)")
            return None
        self.templates_path.parent.mkdir(parents=True, exist_ok=True)
        return self.miner.save(self.templates_path)

    @property
    def header_fields(self) -> list[str]:
        return list(self.format.fields)

    def format_report(self) -> dict[str, Any]:
        """The log format in use, for JSON documents: ``format`` (preset name or format string),
        ``detected`` (auto-detection chose it) and, when detected, how and on how many lines."""
        if self.detection is not None:
            return self.detection.to_dict()
        return {"format": self.format.name or self.format.spec, "detected": False}


def _source(path: str, stdin: Any) -> tuple[Any, str]:
    import sys

    from mlctl.core.errors import NotFound, UsageError

    if path == "-":
        return (stdin if stdin is not None else sys.stdin.buffer), "stdin"
    p = Path(path)
    if not p.exists():
        raise NotFound(f"no such file: {path}")
    if p.is_dir():
        raise UsageError(f"{path} is a folder", hint="give one log file, or - for stdin")
    return p, str(p)


def read_input(path: str, *, stdin: Any = None) -> Iterator[tuple[int, str]]:
    """``(line_no, text)`` of a file or ``-`` (stdin), read as bytes (invalid UTF-8 replaced).

    A missing file or a folder raises at once (not when the first line is asked for).
    """
    from mlctl.logs.formats import read_lines

    source, _ = _source(path, stdin)
    return read_lines(source)


def read_records(path: str, *, stdin: Any = None, defer_id: bool = False) -> Iterable[LogRecord]:
    """Raw records from a file or ``-`` (stdin), read as bytes (invalid UTF-8 replaced).

    ``defer_id``: leave each ``doc_id`` to be computed by whatever sends the records to a sink.
    """
    from mlctl.logs.formats import read_lines

    source, name = _source(path, stdin)
    for line_id, text in read_lines(source):
        yield LogRecord(line_id=line_id, raw=text, source=name, defer_id=defer_id)


def classify_input(pipeline: LogPipeline, records: Iterable[LogRecord], *, alerts_only: bool = False,
                   save_templates: bool = True) -> ClassifiedLines:  # fmt: skip
    """Split, mine and classify ``records`` into a :class:`ClassifiedLines` result (rows come lazily)."""
    from mlctl.logs.classify import class_counts
    from mlctl.logs.results import ClassifiedLines

    batch = pipeline.process(list(records))
    if save_templates:
        pipeline.save_templates()
    return ClassifiedLines(batch, class_counts(batch), pipeline.format_report(), alerts_only=alerts_only)


def route_input(pipeline: LogPipeline, records: Iterable[LogRecord], *, dry_run: bool = False,
                save_templates: bool = True) -> Document:  # fmt: skip
    """Classify ``records`` and write each to the sinks of ``logs.routes`` (with ``dry_run``, only count
    where they would go): ``{"lines", "classes", "sinks", "dry_run", "log_format"}``."""
    from mlctl.logs.classify import class_counts
    from mlctl.logs.results import Document

    loaded = pipeline.loaded
    batch = pipeline.process(list(records))
    if save_templates and not dry_run:
        pipeline.save_templates()
    router = build_router(loaded)
    shares = router.route(batch)
    written = {name: len(recs) for name, recs in shares.items()}
    if not dry_run:
        for record in batch:
            record.ensure_doc_id()
        try:
            router.write(batch)
        finally:
            router.close()
        if loaded.project_file is None:
            message(f"not in a project: lines written to {', '.join(sink_urls(loaded).values())}")
    doc = {"lines": len(batch), "classes": class_counts(batch), "sinks": written, "dry_run": dry_run,
           "log_format": pipeline.format_report()}  # fmt: skip
    return Document(doc, title="would route" if dry_run else "routed")
