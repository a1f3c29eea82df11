"""Telemetry: OpenTelemetry tracing, Prometheus metrics and the decision log.

The lowest layer of the package: everything may use it, it imports nothing of the sidecar's
but errors and settings, so its APIs take plain values (no Decision, no CheckRequest).
"""
