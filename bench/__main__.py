"""`python -m bench` (what `make bench` runs): flags or BENCH_* variables, the parts, the report.

A flag wins over its environment variable. A full run writes bench/out/results.json and
docs/performance.md; a partial or quick run writes bench/out/ only. Exit codes: 0 done, 1 no
trustworthy numbers (a probe failed, a process died, too many errors), 2 usage error.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shlex
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench import bruteforce, hostile, micro, profile, ratelimit, report, scale
from bench.macro import Config, load_test
from bench.material import make_material
from bench.procs import BenchError, find_binary
from bench.results import InProcess, Results
from bench.setups import SETUPS, TLS_SETUPS
from bench.stack import Stack

Say = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[1]
OUT, DOCS = Path("bench/out"), Path("docs/performance.md")


def _load(results: Results, config: Config, say: Say) -> None:
    material, seconds = make_material(), config.profile_seconds

    def profiled(current: Stack) -> None:
        if seconds <= 0:
            return
        say(f"profiling the sidecar-tcp sidecar for 2 x {seconds:g} s (py-spy)")
        try:
            results.profile = profile.record(
                current, token=material.token, config=config, seconds=seconds, out=OUT
            )
        except BenchError as exc:
            say(f"no profile: {exc}")

    logs = OUT / "logs"
    results.load = load_test(
        SETUPS, material=material, config=config, logs=logs, say=say, then=profiled
    )


def _in_process(field: str, run: Callable[..., list[InProcess]]) -> Callable[..., None]:
    """A part measuring scenarios in-process into `field` of Results."""

    def part(results: Results, config: Config, say: Say) -> None:
        repeats, iterations = config.micro_repeats, config.micro_iterations
        say(f"{field}: {repeats} x {iterations:,} checks per scenario")
        found = run(make_material(), iterations=iterations, repeats=repeats)
        setattr(results, field, found)
        for m in found:
            say(f"{field} {m.name:<14} {m.wall_us:7.1f} µs {m.cpu_us:7.1f} CPU-µs")

    return part


def _scale(results: Results, config: Config, say: Say) -> None:
    for size in config.scale_sizes:
        say(f"scale: {size:,} policies")
        results.scale.append(s := scale.measure(size, make_material()))
        say(f"scale {size:>6,}: load {s.load_s:.2f} s, RSS {s.rss_after_mb:.0f} MB")


def _ratelimit(results: Results, config: Config, say: Say) -> None:
    logs = OUT / "logs" / "ratelimit"
    measured = functools.partial(ratelimit.run_inprocess, logs=logs)
    _in_process("ratelimit", measured)(results, config, say)
    results.ratelimit_load = ratelimit.run_load(make_material(), config=config, logs=logs, say=say)


def _hostile(results: Results, config: Config, say: Say) -> None:
    say(f"the check port under attack, engines {', '.join(hostile.ENGINES)}")
    results.hostile = hostile.run(logs=OUT / "logs" / "hostile", say=say)


def _tls(results: Results, config: Config, say: Say) -> None:
    logs = OUT / "logs" / "tls"
    results.tls_load = load_test(
        TLS_SETUPS, material=make_material(), config=config, logs=logs, say=say
    )


#: The parts of a run, in the order they run; each fills its fields of Results.
PARTS: dict[str, Callable[[Results, Config, Say], None]] = {
    "load": _load,
    "micro": _in_process("micro", micro.run_micro),
    "scale": _scale,
    "ratelimit": _ratelimit,
    "hostile": _hostile,
    "tls": _tls,
    "bruteforce": _in_process("bruteforce", bruteforce.run_inprocess),
}


def _first_line(name: str, *args: str) -> str:
    try:
        done = subprocess.run(
            [find_binary(name), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired, BenchError) as exc:
        return f"unknown ({exc})"
    return next(iter((done.stdout or done.stderr).strip().splitlines()), "unknown")


#: A fixed pure-Python workload, timed before each part: this shared host's speed moves between
#: runs and within one, and the ratios of the report move with it.
REFERENCE = "sum(range(10000))"
REFERENCE_KEY = f"python speed before each part (`{REFERENCE}`, best of 5)"


def reference_us() -> float:
    """REFERENCE's best time of five, in µs: higher is a slower moment of the machine."""
    return min(timeit.repeat(REFERENCE, number=200, repeat=5)) / 200 * 1e6


def machine_info() -> dict[str, str]:
    """What a result was measured on: numbers without the machine and versions mean little."""
    cpu = next(
        (line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
        "",
    )
    envoy, wrk = _first_line("envoy", "--version"), _first_line("wrk", "-v")
    commit = _first_line("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    if _first_line("git", "-C", str(ROOT), "status", "--porcelain", "--", "authz") != "unknown":
        commit += " (authz/ has uncommitted changes)"
    packages = ("grpcio", "protobuf", "PyJWT", "cryptography")
    load1, load5, _ = os.getloadavg()
    return {
        "cpu": cpu.partition(":")[2].strip() or platform.processor() or "unknown",
        "cpus": f"{os.cpu_count()} (usable by the bench: {len(os.sched_getaffinity(0))})",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "envoy": envoy.split("version:")[-1].strip().partition("/")[2] or envoy,
        "wrk": wrk.split(" Copyright")[0],
        "packages": ", ".join(f"{name} {metadata.version(name)}" for name in packages),
        "commit": commit,
        "load average at start": f"{load1:.2f} (1 min), {load5:.2f} (5 min)",
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


def _on(value: str) -> bool:
    return value.lower() not in {"", "0", "false", "no", "off"}


def positive(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {value!r}")
    return int(value)


#: (flag, type, default, help); BENCH_<FLAG> overrides the default, the flag both.
FLAGS: tuple[tuple[str, Callable[[str], Any], str, str], ...] = (
    ("duration", seconds, "10s", "each measured run"),
    ("warmup", seconds, "2s", "the unmeasured run before each"),
    ("rounds", positive, "2", "interleaved rounds of every setup"),
    ("connections", positive, "16", "wrk's connections"),
    ("envoy-concurrency", positive, "1", "worker threads of every Envoy"),
    ("wrk-cpus", str, "", "taskset CPU list for wrk"),
    ("only", str, ",".join(PARTS), f"comma-separated parts: {', '.join(PARTS)}"),
    ("quick", _on, "", "smoke run: 1 s per setup, one round, small sizes; docs/ left alone"),
    ("profile", _on, "1", "record the sidecar with py-spy after the rounds (off in quick mode)"),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    for flag, kind, default, what in FLAGS:
        env = os.environ.get(f"BENCH_{flag.upper().replace('-', '_')}") or default
        if kind is _on:
            switch = argparse.BooleanOptionalAction
            p.add_argument(f"--{flag}", action=switch, default=_on(env), help=what)
        else:
            p.add_argument(f"--{flag}", type=kind, default=env, help=what)
    return p


def options(args: argparse.Namespace) -> Config:
    fields = ("duration", "warmup", "rounds", "connections", "envoy_concurrency")
    chosen = Config(
        **{name: getattr(args, name) for name in fields},
        wrk_cpus=args.wrk_cpus or None,
        profile_seconds=5.0 if args.profile else 0.0,
    )
    if not args.quick:
        return chosen
    quick = replace(chosen, duration=1, warmup=1, rounds=1, quiet_wait=0, retries=0)
    small = replace(quick, micro_iterations=500, micro_repeats=2, scale_sizes=(100, 1_000))
    return replace(small, profile_seconds=0, quick=True)


def exact_command(argv: list[str]) -> str:
    """How to repeat this run: `make bench` with its BENCH_* variables, or the flags given."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    base = ["python", "-m", "bench", *map(shlex.quote, argv)] if argv else ["make", "bench"]
    return " ".join([*env, *base])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    if unknown := [part for part in parts if part not in PARTS]:
        parser().error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    chosen, began = options(args), time.monotonic()
    config = {**asdict(chosen), "parts": parts}
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = exact_command(sys.argv[1:] if argv is None else argv)
    results = Results(started=started, command=command, machine=machine_info(), config=config)
    speeds: list[str] = []
    try:
        for name in parts:
            speeds.append(f"{name} {reference_us():.0f} µs")
            results.machine[REFERENCE_KEY] = ", ".join(speeds)
            PARTS[name](results, chosen, lambda line: print(line, flush=True))
    except BenchError as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 1
    results.elapsed_s = time.monotonic() - began
    # A partial or quick run must not replace the full report.
    full = set(parts) == set(PARTS) and not chosen.quick
    results.write_json(OUT / ("results.json" if full else "results-partial.json"))
    path = DOCS if full else OUT / "performance.md"
    path.write_text(report.render(results, DOCS.read_text()))
    kept = "" if full else " (docs/ left alone)"
    print(f"wrote {path}{kept}; raw results in {OUT}; {results.elapsed_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
