"""Anomaly detection on server metrics: detectors, sources, scoring, evaluation and the watch loop.

The names below are the package's API, imported on first use (``import mlctl.detect`` loads
neither numpy nor pandas). Two calls share their module's name and are imported from it:
:func:`mlctl.detect.evaluate.evaluate` and :func:`mlctl.detect.plot.plot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.detect.alerting import Alerter
    from mlctl.detect.base import Detector, available_detectors, make_detector, register
    from mlctl.detect.evaluate import EvaluationReport, leave_one_group_out
    from mlctl.detect.nab import prepare_corpus, score_corpus
    from mlctl.detect.scoring import ScoreReport, score, score_frame
    from mlctl.detect.sources import MetricFrame, read_input, read_prometheus
    from mlctl.detect.spec import DetectSpec
    from mlctl.detect.watch import Watcher, WatchReport

_MODULES = {
    "mlctl.detect.spec": ["DetectSpec"],
    "mlctl.detect.base": ["Detector", "register", "available_detectors", "make_detector"],
    "mlctl.detect.sources": ["MetricFrame", "read_input", "read_prometheus"],
    "mlctl.detect.scoring": ["score", "score_frame", "ScoreReport"],
    "mlctl.detect.watch": ["Watcher", "WatchReport"],
    "mlctl.detect.alerting": ["Alerter"],
    "mlctl.detect.evaluate": ["EvaluationReport", "leave_one_group_out"],
    "mlctl.detect.nab": ["prepare_corpus", "score_corpus"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS,
                                    extras={"numpy": "ml", "pandas": "ml", "sklearn": "ml", "pyarrow": "ml",
                                            "statsmodels": "stats", "matplotlib": "ml"})
__all__ = sorted(_EXPORTS)
