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
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.core.config import LoadedConfig
from mlctl.core.output import log, message
from mlctl.logs.classify import META_FILE, LogClassifier, classify
from mlctl.logs.record import UNPARSED, LogRecord

if TYPE_CHECKING:
    from mlctl.logs.autoformat import Detection

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
        from mlctl.logs.rules import load_rules

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
        self.rules = load_rules(loaded.root / rules_path) if rules_path else []
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
            return (self.model_dir / META_FILE).stat().st_mtime
        except OSError:
            return None

    def _load_model(self) -> None:
        if not self.use_model:
            return
        stamp = self._stamp()
        if stamp is None or stamp == self._model_stamp:
            return
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
        for record in records:
            if record.parsed:
                miner.learn(record.content)
        miner.consolidate()
        for record in records:
            if record.parsed:
                cid = miner.cluster_of(record.content)
                if cid is None:
                    cid = miner.learn(record.content)
                m = miner.match(record.content, cid)
                record.event_id, record.template, record.params = m.event_id, m.template, m.params

    def process(self, records: Sequence[LogRecord], *, classify_lines: bool = True) -> list[LogRecord]:
        """Split, mine and (optionally) classify a batch; every input record comes back."""
        batch = self.split(records)
        self.mine(batch)
        if classify_lines:
            self.maybe_reload()
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


def read_records(path: str, *, stdin: Any = None) -> Iterable[LogRecord]:
    """Raw records from a file or ``-`` (stdin), read as bytes (invalid UTF-8 replaced)."""
    import sys

    from mlctl.core.errors import NotFound, UsageError
    from mlctl.logs.formats import read_lines

    if path == "-":
        source = stdin if stdin is not None else sys.stdin.buffer
        name = "stdin"
    else:
        p = Path(path)
        if not p.exists():
            raise NotFound(f"no such file: {path}")
        if p.is_dir():
            raise UsageError(f"{path} is a folder", hint="give one log file, or - for stdin")
        source, name = p, str(p)
    for line_id, text in read_lines(source):
        yield LogRecord(line_id=line_id, raw=text, source=name)
