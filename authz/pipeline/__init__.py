"""The decision: small steps run in order over one request and one policy snapshot.

host -> source IP -> path -> rule -> token -> scopes -> rate limits -> allow, then the
policy's mode (see decide.py for the list, steps/ for one module per step, context.py for what
they share). Each step either passes or ends the evaluation with a decision; nothing here does
blocking I/O and nothing here knows about gRPC or Envoy's message types (see authz.server).
"""
