"""`python -m bench` (what `make bench` runs): flags, or BENCH_* environment variables.

A flag wins over its environment variable. Durations are whole seconds: "10s", "1m" or "10".
Exit codes: 0 done, 1 the run could not give trustworthy numbers (a probe failed, a process
died, too many errors), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import chart, report
from bench.macro import MacroConfig
from bench.procs import BenchError
from bench.results import load_json
from bench.run import PARTS, Options, run


def seconds(value: str) -> int:
    """Whole seconds from "10s", "1m" or "10" (wrk takes no fractions of a second)."""
    text = value.strip().lower()
    scale = 60 if text.endswith("m") else 1
    try:
        number = int(text.rstrip("sm"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration in whole seconds: {value!r} (e.g. 10s, 1m)"
        ) from None
    return number * scale


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default) or default


def _flag(name: str) -> bool:
    return os.environ.get(f"BENCH_{name}", "").strip().lower() in {"1", "true", "yes", "on"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=seconds, default=seconds(_env("DURATION", "10s")))
    p.add_argument("--warmup", type=seconds, default=seconds(_env("WARMUP", "2s")))
    p.add_argument("--rounds", type=int, default=int(_env("ROUNDS", "2")))
    p.add_argument("--connections", type=int, default=int(_env("CONNECTIONS", "16")))
    p.add_argument("--envoy-concurrency", type=int, default=int(_env("ENVOY_CONCURRENCY", "1")))
    p.add_argument("--wrk-cpus", default=os.environ.get("BENCH_WRK_CPUS") or None)
    p.add_argument(
        "--only",
        default=_env("ONLY", ",".join(PARTS)),
        help=f"comma-separated parts to run: {', '.join(PARTS)}",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        default=_flag("QUICK"),
        help="smoke run: 1 s per setup, one round, small sizes; docs/ is left alone",
    )
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("BENCH_PROFILE", "1").strip().lower() not in {"0", "false", "no"},
        help="record the sidecar with py-spy after the rounds (default on, off in quick mode)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="no measurement: redraw the chart and rewrite the doc from OUT/results.json",
    )
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--docs", type=Path, default=Path("docs"))
    return p


def options(args: argparse.Namespace) -> Options:
    parts = tuple(part.strip() for part in args.only.split(",") if part.strip())
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise SystemExit(f"python -m bench: unknown part(s) {unknown}; choose from {PARTS}")
    if args.quick:
        return Options(
            macro=MacroConfig(
                duration=1,
                warmup=1,
                rounds=1,
                connections=args.connections,
                envoy_concurrency=args.envoy_concurrency,
                wrk_cpus=args.wrk_cpus,
                quiet_wait=0,
                retries=0,
            ),
            parts=parts,
            micro_iterations=500,
            micro_repeats=2,
            scale_sizes=(100, 1_000),
            profile_seconds=0,
            out=args.out,
            docs=None,
        )
    return Options(
        macro=MacroConfig(
            duration=args.duration,
            warmup=args.warmup,
            rounds=args.rounds,
            connections=args.connections,
            envoy_concurrency=args.envoy_concurrency,
            wrk_cpus=args.wrk_cpus,
        ),
        parts=parts,
        profile_seconds=5.0 if args.profile else 0.0,
        out=args.out,
        # A partial run must not replace the full report.
        docs=args.docs if set(parts) == set(PARTS) else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.report_only:
        results = load_json(args.out / "results.json")
        chart.draw(results, args.docs / "performance.png")
        print(f"wrote {report.write(results, docs=args.docs)} and performance.png")
        return 0
    try:
        run(options(args), say=lambda line: print(line, flush=True))
    except BenchError as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
