"""The decision: small evaluators run in order over one request and one policy snapshot.

host lookup -> source IP -> path normalization -> rule match -> authentication -> scopes
-> rate limits -> response.
Each step either passes or ends the evaluation with a deny; nothing here does blocking I/O
and nothing here knows about gRPC or Envoy's message types (see authz.server).
"""
