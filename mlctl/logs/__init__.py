"""Log processing: parse (template mining), classify, route to sinks, stream from Kafka, evaluate.

The names below are the package's API (``mlctl classify-logs`` is one call to one of them each),
imported on first use. Two calls share their module's name and are imported from it:
:func:`mlctl.logs.classify.classify` and :func:`mlctl.logs.retrain.retrain`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.logs.autoformat import detect_format
    from mlctl.logs.classify import LogClassifier, class_counts, is_alert
    from mlctl.logs.dag import write_dag
    from mlctl.logs.evaluate import evaluate_parsing, grouping_accuracy, parsing_accuracy
    from mlctl.logs.formats import LogFormat, read_lines
    from mlctl.logs.masking import mask_text
    from mlctl.logs.miner import TemplateMiner
    from mlctl.logs.parse import parse_file, parse_lines
    from mlctl.logs.pipeline import LogPipeline
    from mlctl.logs.record import LogRecord
    from mlctl.logs.results import ClassifiedLines, ParsedLines
    from mlctl.logs.rules import Rule, apply_rules, load_rules
    from mlctl.logs.search import search_index
    from mlctl.logs.sinks import Router, Sink, make_sink
    from mlctl.logs.spec import LogsSpec
    from mlctl.logs.stream import StreamReport, run_stream
    from mlctl.logs.training import train_classifier

_MODULES = {
    "mlctl.logs.spec": ["LogsSpec"],
    "mlctl.logs.formats": ["LogFormat", "read_lines"],
    "mlctl.logs.autoformat": ["detect_format"],
    "mlctl.logs.masking": ["mask_text"],
    "mlctl.logs.miner": ["TemplateMiner"],
    "mlctl.logs.parse": ["parse_lines", "parse_file"],
    "mlctl.logs.record": ["LogRecord"],
    "mlctl.logs.pipeline": ["LogPipeline"],
    "mlctl.logs.results": ["ParsedLines", "ClassifiedLines"],
    "mlctl.logs.classify": ["LogClassifier", "is_alert", "class_counts"],
    "mlctl.logs.rules": ["Rule", "load_rules", "apply_rules"],
    "mlctl.logs.sinks": ["Sink", "make_sink", "Router"],
    "mlctl.logs.search": ["search_index"],
    "mlctl.logs.stream": ["run_stream", "StreamReport"],
    "mlctl.logs.training": ["train_classifier"],
    "mlctl.logs.dag": ["write_dag"],
    "mlctl.logs.evaluate": ["evaluate_parsing", "grouping_accuracy", "parsing_accuracy"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS,
                                    extras={"sklearn": "ml", "pandas": "ml", "numpy": "ml",
                                            "confluent_kafka": "kafka", "opensearchpy": "search"})
__all__ = sorted(_EXPORTS)
