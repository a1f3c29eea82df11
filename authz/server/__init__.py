"""The network edge: Envoy's ext_authz gRPC service, gRPC health, and HTTP probes.

This is the one place that knows Envoy's message types; it converts them to and from the
pipeline's plain values and turns every error into a deny.
"""
