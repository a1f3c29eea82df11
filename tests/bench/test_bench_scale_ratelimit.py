"""The scale and rate-limit parts of the benchmark, run for real and small (no timing assertions).

Scale: a child process loads generated policies through the file source and the Kubernetes
source's compile, and reloads after a change. Rate limits: the in-process scenarios run against
a real redis-server (Debian's, installed by .ci/run) and prove Redis counted every check; the
load part runs its three sidecars under a 1 s wrk. The report renders what they produced.
"""

from __future__ import annotations

from pathlib import Path

from bench import ratelimit, report, scale
from bench.macro import Config
from bench.material import make_material
from bench.results import Results

MATERIAL = make_material()
ROOT = Path(__file__).resolve().parents[2]


def test_scale_measures_both_sources_and_a_reload() -> None:
    result = scale.measure(120, MATERIAL, repeats=2)
    assert (result.policies, result.files, result.repeats) == (120, 2, 2)
    for value in (result.load_s, result.read_s, result.compile_s, result.k8s_compile_s):
        assert value > 0
    assert result.reload_s > 0
    assert result.load_cpu_s > 0
    assert result.rss_after_mb >= result.rss_before_mb > 0
    assert result.lookup_hit_ns >= 0


def test_rate_limits_in_process_count_in_redis(tmp_path: Path) -> None:
    found = ratelimit.run_inprocess(MATERIAL, iterations=64, repeats=1, logs=tmp_path)
    by_name = {m.name: m for m in found}
    assert set(by_name) == {"none", "memory", "redis", f"redis-x{ratelimit.CONCURRENCY}"}
    assert by_name["none"].redis_calls_per_decision == 0
    assert by_name["memory"].redis_calls_per_decision == 0
    assert by_name["redis"].redis_calls_per_decision >= 1
    assert by_name[f"redis-x{ratelimit.CONCURRENCY}"].redis_calls_per_decision >= 1
    assert all(m.cpu_us > 0 and m.wall_us > 0 for m in found)


def test_rate_limits_under_load_and_the_report(tmp_path: Path) -> None:
    config = Config(duration=1, warmup=0, rounds=1, quiet_wait=0, retries=0)
    outcome = ratelimit.run_load(MATERIAL, config=config, logs=tmp_path, say=lambda _: None)
    assert [s.setup for s in outcome.setups] == [ratelimit.NONE, ratelimit.MEMORY, ratelimit.SHARED]
    shared = outcome.setups[2]
    assert shared.rps > 0
    assert "redis" in shared.cpu_us_per_request
    assert f"RateLimit-Limit {ratelimit.LIMIT}" in outcome.probes[ratelimit.SHARED]
    assert f"RateLimit-Limit {ratelimit.LIMIT}" not in outcome.probes[ratelimit.NONE]
    results = Results(started="now", command="make bench", machine={}, config={})
    results.ratelimit_load = outcome
    text = report.render(results, (ROOT / "docs" / "performance.md").read_text())
    assert "| `rl-redis` the same rule with a rate limit, counted in Redis |" in text
