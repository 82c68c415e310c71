"""Built-in detectors; importing this package registers them.

scikit-learn is imported only when an ``iforest`` detector fits its first forest.
"""

from mlctl.detect.detectors import changepoint, context, ensemble, forecast, iforest, seasonal, zscore

__all__ = ["changepoint", "context", "ensemble", "forecast", "iforest", "seasonal", "zscore"]
