"""Rate limits: the limiter seam, bucket keys, the in-memory and Redis backends.

The pipeline (authz.pipeline.ratelimits) turns a rule's compiled limits into `Hit`s - one bucket
key per limit - and asks a `Limiter` whether all of them admit the request. Backends count only
when every limit admits it (two phases: check all, then commit all; atomic in Redis).
"""
