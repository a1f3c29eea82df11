"""docs/performance.md: the numbers of one run, written into the hand-written document.

The document is prose a person edits; the blocks between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` are rewritten from Results on every run, so numbers never drift from
the run. A section is a function from Results to markdown ("" when its part did not run) and
one line in SECTIONS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.hostile import P99_MAX_MS, RSS_GROWTH_MAX_MB
from bench.ratelimit import NONE
from bench.results import InProcess, LoadResult, Results, SetupSummary
from bench.setups import NATIVE, SETUPS, TLS_MAX_LOSS, TLS_PLAIN

#: The check path's targets: throughput and p99 against native jwt_authn, CPU per decision
#: in-process (MICRO_TARGET), and loading 10 k policies.
THROUGHPUT_RATIO_MIN, P99_RATIO_MAX, CPU_US_MAX = 0.5, 2.0, 120.0
COMPILE_10K_MAX_S, RSS_10K_MAX_MB, READY_10K_MAX_S = 2.0, 150.0, 1.5
MICRO_TARGET = "wire-warm"
#: (setup, baseline, what the pair shows): one change measured within the same run.
PAIRS = (
    ("sidecar-tcp", "sidecar-tcp-grpcio", "everything below together: the sidecar now and before"),
    ("sidecar-tcp", "sidecar-tcp-asyncio", "uvloop instead of asyncio's own event loop"),
    ("sidecar-uds-w2", "sidecar-uds", "--workers 2 instead of one process, on 2 cores"),
)
LATENCY = "p50 ms | p99 ms | p99.9 ms"
OTHER = "other busy CPU (cores)"


def table(header: str, rows: Iterable[str]) -> str:
    """A markdown table from its header and rows, each written as cells joined by " | "."""
    rule = "|" + "---|" * len(header.split(" | "))
    return "\n".join([f"| {header} |", rule, *(f"| {row} |" for row in rows)])


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _cpu_us(s: SetupSummary, *roles: str) -> str:
    cpu = s.cpu_us_per_request
    return " | ".join(f"{cpu[role]:.0f}" if role in cpu else "-" for role in roles)


def _latency(s: SetupSummary) -> str:
    return f"{s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.p999_ms:.2f}"


def _probes(load: LoadResult) -> str:
    return "; ".join(f"`{name}`: {', '.join(checks)}" for name, checks in load.probes.items())


def _in_process(found: list[InProcess], header: str, extra: Callable[[InProcess], str]) -> str:
    """A scenario per row: name, what, µs and CPU-µs, then `extra`'s cells."""
    cells = "`{0.name}` | {0.description} | {0.wall_us:.1f} | {0.cpu_us:.1f}"
    return table(f"scenario | what | {header}", (cells.format(m) + extra(m) for m in found))


def _run(results: Results) -> str:
    return (
        f"Measured {results.started} by `{results.command}` in {results.elapsed_s / 60:.1f} min. "
        "Raw numbers: `bench/out/results.json`; every wrk report and process log: "
        "`bench/out/logs/`."
    )


def _machine(results: Results) -> str:
    return table(" | ", (f"{key} | {value}" for key, value in results.machine.items()))


def _load(results: Results) -> str:
    if results.load is None:
        return ""
    c = results.config
    wrk = f"pinned to CPUs {c['wrk_cpus']}" if c["wrk_cpus"] else "not pinned"
    rows = (
        f"`{s.setup}` {s.title} | {s.rps:,.0f} | {_latency(s)} | "
        f"{' / '.join(f'{v:,.0f}' for v in s.rps_runs)} | {s.errors} | {s.repeated}"
        for s in results.load.setups
    )
    header = f"setup | req/s | {LATENCY} | req/s per round | errors | runs repeated"
    return (
        f"wrk: {c['connections']} connections, {c['threads']} threads, {c['duration']} s per run "
        f"after a {c['warmup']} s warmup, {c['rounds']} rounds; a wait of up to "
        f"{c['quiet_wait']:g} s before each run, a run with more than {c['quiet_cores']:g} cores "
        f"of other work measured again (retries: {c['retries']}); every Envoy with "
        f"`--concurrency {c['envoy_concurrency']}`; wrk {wrk}.\n\n"
        f"Probed before timing: {_probes(results.load)}.\n\n{table(header, rows)}"
    )


def _ratios(results: Results) -> str:
    """Each setup against native jwt_authn; the targets apply to the sidecar's own setups."""
    if results.load is None or (native := results.load.get(NATIVE)) is None:
        return ""
    reference = {s.name for s in SETUPS if s.reference}
    rows = []
    for s in results.load.setups:
        if s.setup in (NATIVE, "noauth"):
            continue
        # Three digits: 0.349 must not read as a met 0.35.
        throughput, p99 = s.rps / native.rps, s.p99_ms / native.p99_ms
        start = f"`{s.setup}` / `{NATIVE}` | {throughput:.3f}"
        if s.setup in reference:
            rows.append(f"{start} |  | reference | {p99:.2f} |  | reference")
            continue
        ok, fast = met(throughput >= THROUGHPUT_RATIO_MIN), met(p99 <= P99_RATIO_MAX)
        targets = f">= {THROUGHPUT_RATIO_MIN} | {ok} | {p99:.2f} | <= {P99_RATIO_MAX:g} | {fast}"
        rows.append(f"{start} | {targets}")
    return table(" | throughput ratio | target |  | p99 ratio | target | ", rows) if rows else ""


def _cpu(results: Results) -> str:
    if results.load is None:
        return ""
    rows = (
        f"`{s.setup}` | {_cpu_us(s, 'gateway', 'sidecar', 'upstream', 'wrk')} | "
        f"{100 * s.machine_busy:.0f} % | {s.other_cpu_s_per_s:.2f}"
        for s in results.load.setups
    )
    header = "setup | gateway Envoy | sidecar / authorizer | upstream Envoy | wrk | machine busy"
    lines = [table(f"{header} | {OTHER}", rows), ""]
    micro = results.micro_result(MICRO_TARGET)
    for s in results.load.setups:
        if micro is not None and s.setup.startswith("sidecar"):
            sidecar = s.cpu_us_per_request["sidecar"]
            lines.append(
                f"- `{s.setup}`: the sidecar process spends **{sidecar:.0f} CPU-µs per request** "
                f"under load, {sidecar / micro.cpu_us:.0f}x the {micro.cpu_us:.0f} CPU-µs the "
                f"decision (parse + check + serialize, `{MICRO_TARGET}`) costs in-process."
            )
    static, native = results.summary("ext_authz-static"), results.summary(NATIVE)
    if static is not None and native is not None:
        lines.append(
            f"- `ext_authz-static` (reference): with an authorizer that costs next to nothing, "
            f"Envoy + ext_authz reaches {static.rps:,.0f} req/s, {static.rps / native.rps:.2f}x "
            f"native jwt_authn; the gateway Envoy alone spends {_cpu_us(static, 'gateway')} "
            "CPU-µs per request there."
        )
    return "\n".join(lines)


def _micro(results: Results) -> str:
    if not results.micro:
        return ""
    c = results.config
    header = "µs / decision | CPU-µs / decision | peak bytes / decision"
    lines = [
        f"The best of {c['micro_repeats']} repeats x {c['micro_iterations']:,} decisions.\n",
        _in_process(
            results.micro,
            f"{header} | bytes retained / 1k decisions",
            lambda m: f" | {m.peak_bytes:,} | {m.retained_bytes_per_1k:,}",
        ),
    ]
    if (target := results.micro_result(MICRO_TARGET)) is not None:
        lines.append(
            f"\nTarget: <= {CPU_US_MAX:g} CPU-µs per decision with a warm token cache "
            f"(`{MICRO_TARGET}`): {target.cpu_us:.1f} CPU-µs, {met(target.cpu_us <= CPU_US_MAX)}."
        )
    inner, bare, outer = map(results.micro_result, ("decide-warm", "check-bare", "check-warm"))
    if inner is not None and bare is not None and outer is not None:
        lines.append(
            f"\nThe pipeline's decision is {inner.cpu_us:.0f} of the servicer's {outer.cpu_us:.0f} "
            f"CPU-µs; metrics and the decision log line take {outer.cpu_us - bare.cpu_us:.0f}, "
            f"and the other {bare.cpu_us - inner.cpu_us:.0f} are request conversion, the "
            "decision id and building the CheckResponse."
        )
    return "\n".join(lines)


def _scale(results: Results) -> str:
    if not results.scale:
        return ""
    rows = [
        f"{s.policies:,} | {s.files} files, {s.yaml_bytes / 2**20:.1f} MiB | "
        f"**{s.ready_s:.2f}** | {s.ready_cpu_s:.2f} | {s.load_s:.2f} | {s.load_cpu_s:.2f} | "
        f"{s.read_s:.2f} | {s.compile_s:.2f} | **{s.k8s_compile_s:.2f}** | "
        f"{s.reload_s:.2f} | {s.rss_before_mb:.0f} -> {s.rss_after_mb:.0f} "
        f"(+{s.rss_after_mb - s.rss_before_mb:.0f}) | {s.lookup_hit_ns:.0f} / "
        f"{s.lookup_miss_ns:.0f} | {s.decide_us:.1f}"
        for s in results.scale
    ]
    header = (
        "policies | YAML | ready s | ready CPU s | files: load s | load CPU s | read s | "
        "compile + index s | Kubernetes: compile + index s | reload, one file changed s | "
        "RSS MB | lookup ns hit / miss | decision µs"
    )
    repeats = " or ".join(str(n) for n in sorted({s.repeats for s in results.scale}))
    lines = [f"Each size loaded in {repeats} fresh processes.\n", table(header, rows), ""]
    ordered = sorted(results.scale, key=lambda s: s.policies)
    small, large = ordered[0], ordered[-1]
    if large.policies >= 10_000:
        lines.append(
            f"- ready <= {READY_10K_MAX_S:g} s at 10 k, beyond what one policy needs (process "
            f"start to the first snapshot through the file source): {large.ready_s:.2f} s "
            f"({large.ready_cpu_s:.2f} CPU s), {met(large.ready_s <= READY_10K_MAX_S)}.\n"
            f"- load + compile <= {COMPILE_10K_MAX_S:g} s at 10 k, through the file source (read, "
            f"parse, validate, compile, index): {large.load_s:.2f} s, "
            f"{met(large.load_s <= COMPILE_10K_MAX_S)}; through the Kubernetes source (the API "
            f"server's objects, already parsed): {large.k8s_compile_s:.2f} s, "
            f"{met(large.k8s_compile_s <= COMPILE_10K_MAX_S)}.\n"
            f"- RSS <= {RSS_10K_MAX_MB:g} MB at 10 k (the whole process, after the load): "
            f"{large.rss_after_mb:.0f} MB, "
            f"{met(large.rss_after_mb <= RSS_10K_MAX_MB)}."
        )
    if large is not small and small.lookup_hit_ns:
        growth = large.lookup_hit_ns / small.lookup_hit_ns
        lines.append(
            f"- host lookup, {large.policies:,} vs {small.policies:,} policies: {growth:.2f}x the "
            f"time for {large.policies // small.policies}x the policies ({met(growth < 2)}: O(1) "
            "means no growth beyond noise and cache effects)."
        )
    return "\n".join(lines)


def _profile(results: Results) -> str:
    if (p := results.profile) is None:
        return "Not profiled in this run (`BENCH_PROFILE=0`, quick mode, or py-spy unavailable)."
    top = sorted(p.breakdown, key=lambda item: item[1], reverse=True)[:3]
    shares = (
        ("where the busy samples were", "{}", ".0f", p.breakdown),
        ("frame on top of the stack", "`{}`", ".1f", p.top_self),
        ("authz frame anywhere on the stack (but the h2 engine's)", "`{}`", ".1f", p.top_inclusive),
    )
    tables = (
        table(f"{what} | share", (f"{name.format(n)} | {100 * v:{digits}} %" for n, v in found))
        for what, name, digits, found in shares
    )
    return f"""\
py-spy (`--native`, 200 Hz) on the `{p.setup}` sidecar for {p.seconds:g} s under the same wrk \
load, after the measured rounds: {p.samples:,} thread samples, of which \
{100 * (1 - p.busy_samples / p.samples):.0f} % caught a thread waiting (epoll, locks, queues, \
the GIL) and are left out; shares are of the {p.busy_samples:,} busy samples. The flamegraph is \
`{Path(p.flamegraph).name}` in bench/out/ (not committed).

Largest shares: {"; ".join(f"{name} **{100 * share:.0f} %**" for name, share in top)}.

""" + "\n\n".join(tables)


def _pairs(results: Results) -> str:
    rows = [
        f"{what} | `{name}` vs `{base}` | {new.rps:,.0f} vs {old.rps:,.0f} "
        f"(**{new.rps / old.rps:.2f}x**) | {new.p99_ms:.2f} vs {old.p99_ms:.2f} | "
        f"{_cpu_us(new, 'sidecar')} vs {_cpu_us(old, 'sidecar')}"
        for name, base, what in PAIRS
        if (new := results.summary(name)) is not None and (old := results.summary(base)) is not None
    ]
    header = "change | setup vs baseline | req/s | p99 ms | sidecar CPU-µs / request"
    text = table(header, rows) if rows else ""
    h2, wire = results.micro_result("h2-warm"), results.micro_result(MICRO_TARGET)
    if h2 is not None and wire is not None:
        text += (
            f"\n\nIn-process, one check through the h2 engine (`h2-warm`: frames in, frames out, "
            "one check per read, so the loop's own overhead is not shared as it is under load) "
            f"costs {h2.cpu_us:.0f} CPU-µs, of which the servicer with protobuf parsing and "
            f"serializing (`{MICRO_TARGET}`) is {wire.cpu_us:.0f}."
        )
    return text.strip()


def _ratelimit(results: Results) -> str:
    if not results.ratelimit:
        return ""
    base = results.ratelimit[0]

    def extra(m: InProcess) -> str:
        redis, scripts = m.redis_cpu_us, m.redis_calls_per_decision
        added = f"+{m.cpu_us + redis - base.cpu_us:.0f}" if m is not base else "-"
        if not scripts:
            return f" | - | {added} | -"
        return f" | {redis:.1f} | {added} | {scripts:.2f}"

    header = "µs / check | sidecar CPU-µs / check | Redis CPU-µs / check"
    header += " | added CPU-µs (sidecar + Redis) vs no limits | Redis scripts / check"
    return _in_process(results.ratelimit, header, extra)


def _versus(load: LoadResult | None, base: str, what: str, roles: tuple[str, ...]) -> str:
    """Setups under load against `base` (no limits, plaintext), with the CPU of `roles`."""
    if load is None:
        return ""
    plain, tls = load.get(base), base == TLS_PLAIN
    rows = []
    for s in load.setups:
        ratio = f"{s.rps / plain.rps:.2f}" if plain else "-"
        if tls:  # TLS's own target: a throughput ratio against plaintext
            ok = plain and s.setup != base and met(s.rps / plain.rps >= 1 - TLS_MAX_LOSS)
            ratio += f" | {ok or '-'}"
        cpu = f"{_cpu_us(s, *roles)} | {s.other_cpu_s_per_s:.2f}"
        rows.append(f"`{s.setup}` {s.title} | {s.rps:,.0f} | {ratio} | {_latency(s)} | {cpu}")
    target = f" | ≥ {1 - TLS_MAX_LOSS:.2f}" if tls else ""
    cpu = " | ".join(f"{'Redis' if r == 'redis' else r} CPU-µs / req" for r in roles)
    header = f"setup | req/s | vs {what}{target} | {LATENCY} | {cpu} | {OTHER}"
    return f"{table(header, rows)}\n\nProbed before timing: {_probes(load)}."


def _hostile(results: Results) -> str:
    if not results.hostile:
        return ""
    rows = (
        f"{r.attack} | `{r.engine}` | {r.checks} | {r.failed} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
        f"{r.max_ms:.0f} | {r.rss_growth_mb:+.1f} | {r.rss_kept_mb:+.1f} | "
        f"{'yes' if r.cut_off else '**no**'} | {', '.join(map(str, r.goaway)) or '-'} | "
        f"{r.frames_sent:,}"
        for r in sorted(results.hostile, key=lambda r: (r.attack, r.engine))
    )
    ok = all(
        r.p99_ms <= P99_MAX_MS
        and r.rss_growth_mb <= RSS_GROWTH_MAX_MB
        and r.cut_off
        and not r.failed
        for r in results.hostile
        if r.engine == "h2"
    )
    header = "attack | engine | checks | failed | p50 ms | p99 ms | max ms | RSS peak MB"
    header += " | RSS after MB | attacker cut off | GOAWAY codes | frames the attacker sent"
    return (
        f"{table(header, rows)}\n\nTargets for the `h2` engine under every attack: a legitimate "
        f"Check's p99 ≤ {P99_MAX_MS:.0f} ms with none failed, RSS growth ≤ "
        f"{RSS_GROWTH_MAX_MB:.0f} MB, the attacker cut off: {met(ok)}."
    )


def _bruteforce(results: Results) -> str:
    if not (found := results.bruteforce):
        return ""
    header = "µs / check | CPU-µs / check | CPU vs no protection"
    return _in_process(found, header, lambda m: f" | {m.cpu_us / found[0].cpu_us:.2f}")


#: Each block of the document and what writes it, in the document's order.
SECTIONS: dict[str, Callable[[Results], str]] = {
    "run": _run,
    "machine": _machine,
    "load": _load,
    "ratios": _ratios,
    "cpu": _cpu,
    "micro": _micro,
    "scale": _scale,
    "profile": _profile,
    "pairs": _pairs,
    "ratelimit": _ratelimit,
    "ratelimit-load": lambda r: _versus(
        r.ratelimit_load, NONE, "no limits", ("sidecar", "redis", "gateway")
    ),
    "hostile": _hostile,
    "tls": lambda r: _versus(r.tls_load, TLS_PLAIN, "plaintext", ("sidecar", "gateway")),
    "bruteforce": _bruteforce,
}


def render(results: Results, template: str) -> str:
    """`template` (the document) with every section's block rewritten from `results`."""
    text = template
    for name, section in SECTIONS.items():
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        found = re.search(f"{re.escape(begin)}.*?{re.escape(end)}", text, flags=re.DOTALL)
        if found is None:
            raise ValueError(f"the document has no block {begin} ... {end}")
        block = f"{begin}\n{section(results) or 'Not measured in this run.'}\n{end}"
        text = text[: found.start()] + block + text[found.end() :]
    return text
