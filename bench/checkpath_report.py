"""The report's account of issue 7's check-path work: what was tried, kept, dropped, and why.

The comparisons that decide what is kept are setups of the same `make bench` run (the sidecar
as it was before, on grpcio's server and asyncio's loop; the same sidecar with one change
undone; --workers 2), so they are generated from the results. What was tried and dropped is
recorded with the numbers of the exploratory runs that dropped it; those were measured one
setup at a time with the same Envoy/wrk load on this machine, not by `make bench`, and say so.
"""

from __future__ import annotations

from bench import results as r
from bench.results import Results, SetupSummary

#: (setup, baseline, what the pair shows) compared from the run.
PAIRS = (
    ("sidecar-tcp", "sidecar-tcp-grpcio", "everything below together: the sidecar now and before"),
    ("sidecar-tcp", "sidecar-tcp-asyncio", "uvloop instead of asyncio's own event loop"),
    ("sidecar-uds-w2", "sidecar-uds", "--workers 2 instead of one process, on 2 cores"),
)


def _cpu(summary: SetupSummary) -> float:
    return summary.cpu_us_per_request.get("sidecar", 0.0)


def _pairs(results: Results) -> str:
    rows = ["| change | setup vs baseline | req/s | p99 ms | sidecar CPU-µs / request |"]
    rows.append("|---|---|---|---|---|")
    for name, base, what in PAIRS:
        setup, baseline = results.summary(name), results.summary(base)
        if setup is None or baseline is None:
            continue
        rows.append(
            f"| {what} | `{name}` vs `{base}` "
            f"| {setup.rps:,.0f} vs {baseline.rps:,.0f} (**{setup.rps / baseline.rps:.2f}x**) "
            f"| {setup.p99_ms:.2f} vs {baseline.p99_ms:.2f} "
            f"| {_cpu(setup):.0f} vs {_cpu(baseline):.0f} |"
        )
    return "\n".join(rows) if len(rows) > 2 else "(the comparison setups were not run)"


def _micro(results: Results) -> str:
    by_name = {m.name: m for m in results.micro}
    h2, wire = by_name.get("h2-warm"), by_name.get("wire-warm")
    if h2 is None or wire is None:
        return ""
    return (
        f"In-process, one check through the h2 engine (`h2-warm`: frames in, frames out, one "
        f"check per read, so the loop's own overhead is not shared as it is under load) costs "
        f"{h2.cpu_us:.0f} CPU-µs, of which the servicer with protobuf parsing and serializing "
        f"(`wire-warm`) is {wire.cpu_us:.0f}."
    )


def _workers_verdict(results: Results) -> str:
    two, one = results.summary("sidecar-uds-w2"), results.summary("sidecar-uds")
    if two is None or one is None:
        return "was not measured in this run"
    speed = two.rps / one.rps
    pace = "slower than" if speed < 0.97 else "faster than" if speed > 1.03 else "no faster than"
    return (
        f"is {pace} one process ({speed:.2f}x the throughput) and costs "
        f"{_cpu(two) / max(_cpu(one), 1e-9):.2f}x the sidecar CPU per request"
    )


def _check_warm(results: Results) -> str:
    found = next((m for m in results.micro if m.name == "check-warm"), None)
    return f"{found.cpu_us:.1f} CPU-µs" if found is not None else "(not measured)"


def _targets(results: Results) -> str:
    """Issue 7's check-path targets in this run, one line each."""
    lines = []
    for q in results.ratios:
        if not q.target:
            continue
        lines.append(
            f"- `{q.setup}`: throughput {q.throughput:.3f}x native (target >= "
            f"{r.THROUGHPUT_RATIO_MIN}: {'met' if q.throughput_ok else 'NOT met'}), p99 "
            f"{q.p99:.2f}x (target <= {r.P99_RATIO_MAX:g}: {'met' if q.p99_ok else 'NOT met'})"
        )
    wire = next((m for m in results.micro if m.name == "wire-warm"), None)
    if wire is not None:
        ok = wire.cpu_us <= r.CPU_US_MAX
        lines.append(
            f"- CPU per decision with a warm token cache (`wire-warm`): {wire.cpu_us:.1f} CPU-µs "
            f"(target <= {r.CPU_US_MAX:g}: {'met' if ok else 'NOT met'})"
        )
    return "\n".join(lines) or "- (not measured in this run)"


def render(results: Results) -> str:
    return f"""Issue 7's check-path targets in this run (policy scale has its own section above):

{_targets(results)}

Before this work, in the `make bench` run of commit 8496389 (the first version of this
page), the sidecar reached 0.21x native jwt_authn with p99 3.6x, spending 454 CPU-µs per
request under load while its whole decision cost 45-53 CPU-µs in-process; py-spy put 34 % of
its busy time in grpcio's Cython/C core, 25 % in syscalls and wakeups, 10 % in asyncio and 26 %
in the decision itself (slowed by the cache misses and GIL hand-offs around it). The check path
was therefore rebuilt from the socket inward. This run, same machine, same load:

{_pairs(results)}

{_micro(results)}

Kept, in the order they were found:

1. **Our own HTTP/2 for the check server** (`--grpc-server h2`, the default; authz/server/h2conn.py).
   An exploratory null responder (a constant answer, no decision) on grpc.aio cost 220-280
   CPU-µs per request under this load - more than the whole decision - because grpcio's C
   core polls in its own thread and hands every event to the event loop through a socket,
   and the two threads take turns at the GIL. The same null responder on the pure-Python
   `h2` package cost about 155; the real servicer on `h2` 245-275, and an in-process count
   showed 130 µs per check inside h2's header validation, HPACK and state machines. The
   engine that was kept frames HTTP/2 itself: answers are precomputed header blocks, HPACK
   decoding is the hpack package's, and Envoy's request header block (identical for every
   check) is decoded once per connection while the decoder's table is unchanged (in-process
   70 -> 49 µs per check). grpcio's server stays available (`--grpc-server grpcio`).
2. **Less per-request work in the servicer**: allow answers are serialized once per distinct
   decision and reused (they carry no decision id); decision ids are sliced from 4 KiB of
   os.urandom at a time instead of one getrandom call each (same randomness, see
   authz/server/ids.py); the decision id travels beside the frozen Decision instead of a
   `dataclasses.replace` copy per check. `check-warm` went from 44.7 CPU-µs (`make bench` at
   8496389) to {_check_warm(results)} in this run.
3. **uvloop** as the default event loop (`--event-loop asyncio` is the way back); the pair above
   is its measure. grpcio's aio server (the admin API, and `--grpc-server grpcio`) and aiohttp
   run on it: the whole end-to-end suite passes on uvloop.
4. **The event loop looked up once per connection**: `asyncio.get_running_loop()` makes a getpid
   system call each time (its fork check), and py-spy put 9.6 % of the h2 engine's busy samples
   in getpid in its first `make bench`; an exploratory A/B under load then showed no CPU
   difference beyond the noise (74-78 CPU-µs per request either way), but the system calls are
   gone.

Tried and dropped (exploratory runs, not `make bench`):

- **grpcio's synchronous server with a thread pool**: the null responder cost 246-265 CPU-µs per
  request, no better than grpc.aio.
- **grpc.aio server options** (`grpc.http2.bdp_probe=0`, `grpc.optimization_target=throughput`):
  no change beyond the run-to-run noise (1,800-3,000 req/s for every variant).
- **Starting each call without a task** (driving the coroutine directly, a task only if it
  waits, so the answer leaves in the same callback): 42-50 vs 45-49 CPU-µs per check
  in-process, and under load 4,255-4,956 vs 4,665-4,976 req/s: nothing measurable; removed.
- **GC tuning** (`gc.freeze()` after startup, thresholds): 50,000 checks through the h2 engine
  in-process triggered no collection at all - the check path's objects are freed by reference
  counting - so there was nothing to tune.
- **--workers 2 on this 2-core machine** {_workers_verdict(results)} (the pair above): Envoy,
  the upstream Envoy and wrk share the two cores with the sidecar, and a second sidecar process
  adds its own loop and wakeups. The option is for machines with cores to spare; `--workers`
  keeps one policy source per pod (files, or the Kubernetes watch with its status writes and
  leader election, in the supervisor) feeding every worker, and `/metrics` sums the workers'
  counters (authz/workers/metrics.py). Each worker keeps its own in-memory rate-limit counters
  (a client spread over N workers may get up to N times its limit; `--redis-url` makes them
  exact), and the sidecar warns about it at startup."""
