"""Anomaly detection on server metrics: detectors, sources, evaluation and the watch loop."""
