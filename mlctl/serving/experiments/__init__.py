"""A/B experiments for the model gateway: the definition, its shared state, how requests are
assigned to variants, and the statistics that decide a winner.

Public API (imported on first use, standard library only behind every name):

* :func:`new_experiment`, :class:`Experiment`, :class:`Variant`, :class:`Shadow` -- a validated
  definition (``mlctl serve experiment create``).
* :func:`open_store`, :class:`ExperimentStore`, :class:`Tally`, :class:`VariantStats`,
  :class:`Outcome` -- experiments and their counters in SQLite (embedded), memory or Redis.
* :func:`make_strategy`, :class:`Strategy`, :class:`Arm` -- assignment strategies
  (:mod:`mlctl.serving.experiments.strategies`: weighted, sticky, thompson, epsilon-greedy).
* :mod:`mlctl.serving.experiments.stats` -- two-proportion z-test, the always-valid mixture SPRT,
  the probability to beat the control, the minimum detectable effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.serving.experiments.definition import Experiment, Shadow, Variant, new_experiment
    from mlctl.serving.experiments.store import ExperimentStore, Outcome, Tally, VariantStats, open_store
    from mlctl.serving.experiments.strategies import Arm, Strategy, make_strategy

_EXPORTS = {
    "Experiment": "mlctl.serving.experiments.definition",
    "Shadow": "mlctl.serving.experiments.definition",
    "Variant": "mlctl.serving.experiments.definition",
    "new_experiment": "mlctl.serving.experiments.definition",
    "ExperimentStore": "mlctl.serving.experiments.store",
    "Outcome": "mlctl.serving.experiments.store",
    "Tally": "mlctl.serving.experiments.store",
    "VariantStats": "mlctl.serving.experiments.store",
    "open_store": "mlctl.serving.experiments.store",
    "Arm": "mlctl.serving.experiments.strategies",
    "Strategy": "mlctl.serving.experiments.strategies",
    "make_strategy": "mlctl.serving.experiments.strategies",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, extras={"redis": "redis"})
