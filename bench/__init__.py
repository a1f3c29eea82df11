"""`make bench`: Envoy alone, Envoy's native jwt_authn and Envoy + this sidecar side by side.

Modules, in the order a run uses them: material (key, tokens, policy), setups (Envoy configs),
procs and stack (the processes, and the probes that prove each setup allows and denies before
it is timed), macro (wrk in interleaved rounds), profile (py-spy), micro (in-process), scale,
ratelimit, hostile, bruteforce, results, report; __main__ reads flags and runs the parts.
redaction is run by hand (`python -m bench.redaction`).
"""
