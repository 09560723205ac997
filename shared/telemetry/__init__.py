"""Metrics, traces and log setup: what every process reports about itself. Imports ``core``
and ``domain`` (status names label the metrics)."""
