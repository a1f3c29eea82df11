"""One `make bench`: load test, microbenchmark and scale, then results.json, the chart, the doc.

The parts run one after another, never at once, so none of them steals CPU from another; the
load test goes first, on a machine not yet warmed by the others' allocations.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import chart, macro, micro, ratelimit, report, scale, stack
from bench.machine import machine_info
from bench.material import make_material
from bench.procs import BenchError
from bench.results import Results, ratio, summarize
from bench.setups import NATIVE, SETUPS

PARTS = ("load", "micro", "scale", "ratelimit")


@dataclass(frozen=True, slots=True)
class Options:
    macro: macro.MacroConfig
    parts: tuple[str, ...] = PARTS
    micro_iterations: int = 10_000
    micro_repeats: int = 7
    scale_sizes: tuple[int, ...] = (1_000, 10_000)
    #: Seconds of py-spy recording on the sidecar; 0 = no profile.
    profile_seconds: float = 5.0
    out: Path = Path("bench/out")
    #: Where performance.md and performance.png go; None = leave the docs alone.
    docs: Path | None = Path("docs")
    command: str = field(default_factory=lambda: exact_command(sys.argv[1:]))


def exact_command(argv: list[str]) -> str:
    """How to repeat this run: `make bench` with its BENCH_* variables, or the flags given."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    base = ["python", "-m", "bench", *map(shlex.quote, argv)] if argv else ["make", "bench"]
    return " ".join([*env, *base])


def _load(results: Results, options: Options, say: Callable[[str], None]) -> None:
    material = make_material()
    logs = options.out / "logs"
    config = options.macro
    say(f"starting {len(SETUPS)} gateways, their sidecars and the upstream (logs: {logs})")
    with stack.stack(
        SETUPS, material=material, envoy_concurrency=config.envoy_concurrency, logs=logs
    ) as current:
        results.probes = stack.probe_all(current, material)
        for name, checks in results.probes.items():
            say(f"probe {name}: {', '.join(checks)}")
        results.runs = macro.run_rounds(
            current, material=material, config=config, logs=logs, progress=say
        )
        if options.profile_seconds > 0:
            say(f"profiling the sidecar-tcp sidecar for 2 x {options.profile_seconds:g} s (py-spy)")
            try:
                results.profile = macro.profile_run(
                    current,
                    setup="sidecar-tcp",
                    material=material,
                    config=config,
                    seconds=options.profile_seconds,
                    out=options.out,
                )
            except BenchError as exc:
                say(f"no profile: {exc}")
    results.setups = [
        summarize(s.name, s.title, [run for run in results.runs if run.setup == s.name])
        for s in SETUPS
    ]
    native = results.summary(NATIVE)
    reference = {setup.name: setup.reference for setup in SETUPS}
    if native is not None:
        results.ratios = [
            ratio(s, native, target=s.setup.startswith("sidecar") and not reference[s.setup])
            for s in results.setups
            if s.setup not in {NATIVE, "noauth"}
        ]


def _ratelimit(results: Results, options: Options, say: Callable[[str], None]) -> None:
    """Rate limits, memory versus Redis: in-process, then under load (bench/ratelimit.py)."""
    material = make_material()
    logs = options.out / "logs" / "ratelimit"
    say(f"rate limits in-process: {options.micro_repeats} x {options.micro_iterations:,} checks")
    results.ratelimit = ratelimit.run_inprocess(
        material, iterations=options.micro_iterations, repeats=options.micro_repeats, logs=logs
    )
    for m in results.ratelimit:
        say(
            f"ratelimit {m.name:<10} {m.wall_us:7.1f} µs  {m.cpu_us:7.1f} CPU-µs"
            f"  Redis {m.redis_cpu_us:5.1f} CPU-µs"
        )
    say(f"rate limits under load: {', '.join(s.name for s in ratelimit.SETUPS)} (logs: {logs})")
    outcome = ratelimit.run_load(material, config=options.macro, logs=logs, progress=say)
    results.ratelimit_runs = outcome.runs
    results.ratelimit_setups = outcome.setups
    results.ratelimit_probes = outcome.probes


def run(options: Options, *, say: Callable[[str], None] = print) -> Results:
    began = time.monotonic()
    config = options.macro
    results = Results(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=options.command,
        machine=machine_info(),
        config={
            "duration_s": config.duration,
            "warmup_s": config.warmup,
            "rounds": config.rounds,
            "connections": config.connections,
            "threads": config.threads,
            "envoy_concurrency": config.envoy_concurrency,
            "wrk_cpus": config.wrk_cpus,
            "quiet_wait_s": config.quiet_wait,
            "noisy_cores": config.noisy_cores,
            "retries": config.retries,
            "micro_iterations": options.micro_iterations,
            "micro_repeats": options.micro_repeats,
            "scale_sizes": list(options.scale_sizes),
            "parts": list(options.parts),
        },
    )
    if "load" in options.parts:
        _load(results, options, say)
    if "micro" in options.parts:
        say(f"micro: {options.micro_repeats} x {options.micro_iterations:,} decisions per scenario")
        results.micro = micro.run_micro(
            make_material(), iterations=options.micro_iterations, repeats=options.micro_repeats
        )
        for m in results.micro:
            say(
                f"micro {m.name:<14} {m.wall_us:7.1f} µs  {m.cpu_us:7.1f} CPU-µs  peak {m.peak_bytes:,} B"
            )
    if "scale" in options.parts:
        material = make_material()
        for size in options.scale_sizes:
            say(f"scale: {size:,} policies")
            result = scale.measure(size, material)
            results.scale.append(result)
            say(
                f"scale {size:>6,}: load {result.load_s:.2f} s (read {result.read_s:.2f} s, "
                f"compile {result.compile_s:.2f} s), Kubernetes compile "
                f"{result.k8s_compile_s:.2f} s, RSS {result.rss_after_mb:.0f} MB, "
                f"lookup {result.lookup_hit_ns:.0f} ns"
            )
    if "ratelimit" in options.parts:
        _ratelimit(results, options, say)
    results.elapsed_s = time.monotonic() - began
    name = "results.json" if options.docs is not None else "results-partial.json"
    results.write_json(options.out / name)
    if options.docs is not None and results.setups:
        chart.draw(results, options.docs / "performance.png")
        say(f"wrote {report.write(results, docs=options.docs)} and performance.png")
    elif results.setups:
        chart.draw(results, options.out / "performance.png")
        (options.out / "performance.md").write_text(report.render(results))
        say(f"wrote {options.out / 'performance.md'} (docs/ left alone)")
    say(f"done in {results.elapsed_s / 60:.1f} min; raw results: {options.out / name}")
    return results
