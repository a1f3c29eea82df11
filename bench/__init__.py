"""`make bench`: the side-by-side benchmark of issue 7, and the harness for optimizing later.

One run on one machine compares Envoy without auth, Envoy's native jwt_authn and Envoy + this
sidecar (gRPC over TCP and over a Unix socket), interleaved so drift hits every setup alike;
then measures the check path in-process and the cost of many policies. The numbers land in
docs/performance.md (with docs/performance.png) and, raw, in bench/out/results.json.

Modules, in the order a run uses them: machine (what it ran on), material (key, token, policy),
setups (Envoy configs), procs (start/stop/measure processes), stack (everything up at once),
probe (each setup must allow and deny before it is timed), load (wrk), macro (interleaved
rounds), profile (py-spy), micro, scale, results, chart, report; run ties them together and
__main__ reads flags and BENCH_* variables.
"""
