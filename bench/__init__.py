"""`make bench`: Envoy alone, Envoy's native jwt_authn and Envoy + this sidecar side by side.

One run on one machine load-tests the setups (bench/setups.py) in interleaved rounds, then
measures the check path in-process, the cost of many policies and of rate limits; the numbers
land in docs/performance.md (and performance.png) and, raw, in bench/out/results.json.

Modules, in the order a run uses them: material (key, tokens, policy), setups (Envoy configs),
procs (processes and their CPU), stack (everything up at once, and the probes that prove each
setup allows and denies before it is timed), macro (wrk in interleaved rounds), profile
(py-spy), micro and wire (in-process), scale, ratelimit, results, chart, report; __main__ reads
flags and BENCH_* variables and runs the parts.

A new part is a function in __main__.PARTS that fills a field of results.Results; its section
of the document is a function and one line in report.SECTIONS.
"""
