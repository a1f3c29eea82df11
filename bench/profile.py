"""Where the sidecar's CPU goes under load: py-spy samples of the running `authz serve`.

Two recordings while wrk keeps the sidecar busy: collapsed stacks (parsed here into a
breakdown and top lists for the report) and a flamegraph SVG for a human. Both use --native,
because most of the time is spent below Python - in gRPC's Cython layer and in syscalls - and a
Python-only profile would show it as one opaque `Handle._run` frame.

Profiling is optional: without py-spy, or without ptrace permission, the report says so.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError, find_binary
from bench.results import ProfileResult

_LINE = re.compile(r":\d+\)")
#: A thread blocked in one of these is waiting, not spending CPU (py-spy's idle detection does
#: not work with --native, so waiting threads are sampled too and are left out here).
_WAITS = {
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "select",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "PyThread_acquire_lock_timed",
    "sem_wait",
    "sem_timedwait",
    "_queue_SimpleQueue_get",
    "take_gil",
}
_SYSCALLS = {
    "write",
    "writev",
    "sendmsg",
    "send",
    "read",
    "readv",
    "recv",
    "recvmsg",
    "recvfrom",
    "sem_post",
    "pthread_cond_signal",
    "syscall",
}
IDLE = "waiting (epoll, locks, queues, GIL)"
CATEGORIES = (
    "authz: decision log (build, queue, write lines)",
    "authz: metrics",
    "authz: the decision (servicer.check, without log and metrics)",
    "gRPC server: syscalls (sendmsg/recvmsg, eventfd and futex wakeups)",
    "gRPC server: Cython/C core",
    "asyncio event loop",
    "other",
    "h2 engine: HTTP/2 frames, HPACK, gRPC framing (authz/server/h2conn.py)",
)


def _frames(stack: str) -> list[str]:
    return [_LINE.sub(")", frame) for frame in stack.split(";")]


def _name(frame: str) -> str:
    return frame.split(" (", 1)[0]


def category(frames: list[str]) -> str:
    """What one sampled stack was doing: IDLE, or one of CATEGORIES."""
    names = {_name(f) for f in frames}
    if names & _WAITS:
        return IDLE
    if any("decisionlog.py" in f for f in frames):
        return CATEGORIES[0]
    if any("telemetry/metrics.py" in f or "prometheus_client" in f for f in frames):
        return CATEGORIES[1]
    if any(
        f.startswith(("AuthorizationServicer.check ", "AuthorizationServicer._check "))
        for f in frames
    ):
        return CATEGORIES[2]
    if _name(frames[-1]) in _SYSCALLS:
        return CATEGORIES[3]
    if any("server/h2conn.py" in f or "server/grpcwire.py" in f or "hpack" in f for f in frames):
        return CATEGORIES[7]
    if any("cygrpc" in f for f in frames):
        return CATEGORIES[4]
    if any("asyncio" in f for f in frames):
        return CATEGORIES[5]
    return CATEGORIES[6]


def _readable(frame: str) -> str:
    """Unresolved native frames ("0x7f.. (lib.so)") grouped by their library."""
    if frame.startswith("0x"):
        library = frame.partition(" (")[2].rstrip(")").split(".cpython")[0].split(".so")[0]
        return f"[native] {library}"
    return frame


@dataclass(frozen=True, slots=True)
class Analysis:
    samples: int
    #: Samples of threads doing work (not waiting).
    busy: int
    #: Shares below are of `busy`.
    breakdown: list[tuple[str, float]]
    top_self: list[tuple[str, float]]
    top_authz: list[tuple[str, float]]


def analyze(collapsed: str) -> Analysis:
    """Read py-spy's collapsed stacks ("frame;frame;... count" per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = busy = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = _frames(stack)
        kind = category(frames)
        if kind == IDLE:
            continue
        busy += samples
        categories[kind] += samples
        own[_readable(frames[-1])] += samples
        for frame in set(frames):
            if "authz/" in frame and not frame.endswith(("cli.py)", "__main__.py)")):
                inclusive[frame] += samples
    if busy == 0:
        return Analysis(total, 0, [], [], [])

    def share(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, count / busy) for name, count in counter.most_common(n)]

    breakdown = [(name, categories[name] / busy) for name in CATEGORIES if categories[name]]
    return Analysis(total, busy, breakdown, share(own, 10), share(inclusive, 10))


def _py_spy(pid: int, *, seconds: float, fmt: str, output: Path) -> None:
    command = [
        find_binary("py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(int(seconds), 1)),
        "--rate",
        "200",
        "--native",
        "--format",
        fmt,
        "--output",
        str(output),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0 or not output.exists():
        raise BenchError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-1000:]}")


def record(pid: int, *, setup: str, seconds: float, out: Path) -> ProfileResult:
    """Profile process `pid` for `seconds` twice (collapsed stacks, then the flamegraph)."""
    collapsed = out / "profile-sidecar.txt"
    flamegraph = out / "profile-sidecar.svg"
    _py_spy(pid, seconds=seconds, fmt="raw", output=collapsed)
    _py_spy(pid, seconds=seconds, fmt="flamegraph", output=flamegraph)
    found = analyze(collapsed.read_text())
    return ProfileResult(
        setup=setup,
        seconds=seconds,
        samples=found.samples,
        busy_samples=found.busy,
        flamegraph=str(flamegraph),
        collapsed=str(collapsed),
        breakdown=found.breakdown,
        top_self=found.top_self,
        top_inclusive=found.top_authz,
    )
