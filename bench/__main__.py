"""`python -m bench` (what `make bench` runs): flags or BENCH_* variables, the parts, the report.

A flag wins over its environment variable. Durations are whole seconds: "10s", "1m" or "10".
The parts run one after another, never at once, so none steals CPU from another; the load test
goes first, on a machine not yet warmed by the others' allocations. A full run writes
bench/out/results.json and the numbers into docs/performance.md (and performance.png); a
partial or quick run writes bench/out/ only. Exit codes: 0 done, 1 the run could not give
trustworthy numbers (a probe failed, a process died, too many errors), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench import bruteforce, chart, hostile, micro, profile, ratelimit, report, scale, tls
from bench.machine import machine_info
from bench.macro import MacroConfig, load_test
from bench.material import make_material
from bench.procs import BenchError
from bench.results import Results
from bench.setups import SETUPS
from bench.stack import stack

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Options:
    macro: MacroConfig
    micro_iterations: int = 10_000
    micro_repeats: int = 7
    scale_sizes: tuple[int, ...] = (1_000, 10_000)
    #: Seconds of py-spy recording on the sidecar; 0 = no profile.
    profile_seconds: float = 5.0
    out: Path = Path("bench/out")


def _load(results: Results, options: Options, say: Say) -> None:
    material, logs, config = make_material(), options.out / "logs", options.macro
    say(f"starting {len(SETUPS)} gateways, their sidecars and the upstream (logs: {logs})")
    with stack(
        SETUPS, material=material, envoy_concurrency=config.envoy_concurrency, logs=logs
    ) as current:
        results.load = load_test(current, material=material, config=config, logs=logs, say=say)
        if options.profile_seconds > 0:
            say(f"profiling the sidecar-tcp sidecar for 2 x {options.profile_seconds:g} s (py-spy)")
            try:
                results.profile = profile.record(
                    current,
                    setup="sidecar-tcp",
                    token=material.token,
                    config=config,
                    seconds=options.profile_seconds,
                    out=options.out,
                )
            except BenchError as exc:
                say(f"no profile: {exc}")


def _micro(results: Results, options: Options, say: Say) -> None:
    say(f"micro: {options.micro_repeats} x {options.micro_iterations:,} decisions per scenario")
    results.micro = micro.run_micro(
        make_material(), iterations=options.micro_iterations, repeats=options.micro_repeats
    )
    for m in results.micro:
        say(f"micro {m.name:<14} {m.wall_us:7.1f} µs {m.cpu_us:7.1f} CPU-µs")


def _scale(results: Results, options: Options, say: Say) -> None:
    material = make_material()
    for size in options.scale_sizes:
        say(f"scale: {size:,} policies")
        results.scale.append(s := scale.measure(size, material))
        say(f"scale {size:>6,}: load {s.load_s:.2f} s, RSS {s.rss_after_mb:.0f} MB")


def _ratelimit(results: Results, options: Options, say: Say) -> None:
    material, logs = make_material(), options.out / "logs" / "ratelimit"
    say(f"rate limits in-process: {options.micro_repeats} x {options.micro_iterations:,} checks")
    results.ratelimit = ratelimit.run_inprocess(
        material, iterations=options.micro_iterations, repeats=options.micro_repeats, logs=logs
    )
    for m in results.ratelimit:
        say(f"ratelimit {m.name:<10} {m.cpu_us:7.1f} CPU-µs, Redis {m.redis_cpu_us:5.1f} CPU-µs")
    say(f"rate limits under load: {', '.join(s.name for s in ratelimit.SETUPS)} (logs: {logs})")
    results.ratelimit_load = ratelimit.run_load(material, config=options.macro, logs=logs, say=say)


def _hostile(results: Results, options: Options, say: Say) -> None:
    logs = options.out / "logs" / "hostile"
    say(f"the check port under attack, engines {', '.join(hostile.ENGINES)} (logs: {logs})")
    results.hostile = hostile.run(logs=logs, say=say)


def _tls(results: Results, options: Options, say: Say) -> None:
    logs = options.out / "logs" / "tls"
    say(f"TLS under load: {', '.join(s.name for s in tls.SETUPS)} (logs: {logs})")
    results.tls_load = tls.run_load(make_material(), config=options.macro, logs=logs, say=say)


def _bruteforce(results: Results, options: Options, say: Say) -> None:
    say(f"brute-force protection: {options.micro_repeats} x {options.micro_iterations:,} checks")
    results.bruteforce = bruteforce.run_inprocess(
        make_material(), iterations=options.micro_iterations, repeats=options.micro_repeats
    )
    for m in results.bruteforce:
        say(f"bruteforce {m.name:<10} {m.wall_us:7.1f} µs {m.cpu_us:7.1f} CPU-µs")


#: The parts of a run, in the order they run; each fills its fields of Results.
PARTS: dict[str, Callable[[Results, Options, Say], None]] = {
    "load": _load,
    "micro": _micro,
    "scale": _scale,
    "ratelimit": _ratelimit,
    "hostile": _hostile,
    "tls": _tls,
    "bruteforce": _bruteforce,
}


def seconds(value: str) -> int:
    """Whole seconds from "10s", "1m" or "10" (wrk takes no fractions of a second)."""
    text = value.strip().lower()
    try:
        return int(text.rstrip("sm")) * (60 if text.endswith("m") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration in whole seconds: {value!r} (e.g. 10s, 1m)"
        ) from None


def positive(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {value!r}")
    return int(value)


def parser() -> argparse.ArgumentParser:
    def env(name: str, default: str) -> str:
        return os.environ.get(f"BENCH_{name}") or default

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=seconds, default=env("DURATION", "10s"))
    p.add_argument("--warmup", type=seconds, default=env("WARMUP", "2s"))
    p.add_argument("--rounds", type=positive, default=env("ROUNDS", "2"))
    p.add_argument("--connections", type=positive, default=env("CONNECTIONS", "16"))
    p.add_argument("--envoy-concurrency", type=positive, default=env("ENVOY_CONCURRENCY", "1"))
    p.add_argument(
        "--wrk-cpus", default=env("WRK_CPUS", "") or None, help="taskset CPU list for wrk"
    )
    p.add_argument(
        "--only",
        default=env("ONLY", ",".join(PARTS)),
        help=f"comma-separated parts: {', '.join(PARTS)}",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        default=env("QUICK", "").lower() in {"1", "true", "yes", "on"},
        help="smoke run: 1 s per setup, one round, small sizes; docs/ is left alone",
    )
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=env("PROFILE", "1").lower() not in {"0", "false", "no", "off"},
        help="record the sidecar with py-spy after the rounds (default on, off in quick mode)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--docs", type=Path, default=Path("docs"))
    return p


def options(args: argparse.Namespace) -> Options:
    macro = MacroConfig(
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        connections=args.connections,
        envoy_concurrency=args.envoy_concurrency,
        wrk_cpus=args.wrk_cpus,
    )
    chosen = Options(macro, profile_seconds=5.0 if args.profile else 0.0, out=args.out)
    if not args.quick:
        return chosen
    quick = replace(macro, duration=1, warmup=1, rounds=1, quiet_wait=0, retries=0)
    small = replace(chosen, micro_iterations=500, micro_repeats=2, scale_sizes=(100, 1_000))
    return replace(small, macro=quick, profile_seconds=0)


def exact_command(argv: list[str]) -> str:
    """How to repeat this run: `make bench` with its BENCH_* variables, or the flags given."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    base = ["python", "-m", "bench", *map(shlex.quote, argv)] if argv else ["make", "bench"]
    return " ".join([*env, *base])


def run(options: Options, parts: list[str], *, command: str, say: Say = print) -> Results:
    began = time.monotonic()
    config = {**asdict(options.macro), **asdict(options), "parts": parts}
    del config["macro"], config["out"]
    results = Results(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        machine=machine_info(),
        config=config,
    )
    for name in parts:
        PARTS[name](results, options, say)
    results.elapsed_s = time.monotonic() - began
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        parser().error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    try:
        results = run(
            options(args),
            parts,
            command=exact_command(sys.argv[1:] if argv is None else argv),
            say=lambda line: print(line, flush=True),
        )
    except BenchError as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 1
    # A partial or quick run must not replace the full report.
    full = set(parts) == set(PARTS) and not args.quick
    out = args.docs if full else args.out
    results.write_json(args.out / ("results.json" if full else "results-partial.json"))
    if results.load is not None:
        chart.draw(results, out / "performance.png")
    path = report.write(results, template=args.docs / "performance.md", out=out / "performance.md")
    kept = "" if full else " (docs/ left alone)"
    print(f"wrote {path}{kept}; raw results in {args.out}; {results.elapsed_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
