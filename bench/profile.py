"""Where the sidecar's CPU goes under load: py-spy (--native) samples of the running sidecar,
split into categories for the report, plus a flamegraph. py-spy's idle detection does not work
with --native, so threads blocked in a wait are recognised by their innermost frame."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.macro import Config, wrk_command
from bench.procs import BenchError, find_binary
from bench.results import ProfileResult
from bench.stack import Stack

_LINE = re.compile(r":\d+\)")
_WAITS = {"epoll_wait", "epoll_pwait", "poll", "select", "pthread_cond_wait", "take_gil"}
_WAITS |= {"pthread_cond_timedwait", "PyThread_acquire_lock_timed", "sem_wait", "sem_timedwait"}
_WAITS |= {"_queue_SimpleQueue_get"}
_SYSCALLS = {"write", "writev", "sendmsg", "send", "read", "readv", "recv", "recvmsg", "recvfrom"}
_SYSCALLS |= {"sem_post", "pthread_cond_signal", "syscall"}
SETUP = "sidecar-tcp"  # the setup whose sidecar is profiled.
IDLE = "waiting (epoll, locks, queues, GIL)"
_H2 = "h2 engine: HTTP/2 frames, HPACK, gRPC framing (authz/server/h2*.py)"
_H2_FRAMES = re.compile(
    "server/h2[a-z]*.py|server/grpcwire.py|hpack|^CPyDef_(h2[a-z]*|grpcwire)___"
)
#: (category, a pattern one of a stack's frames matches, or None: the innermost frame is a
#: system call), in the order a stack is tested, first match wins: the h2 engine's frames
#: before the C core's and the event loop's (they run inside both); no match is "other".
#: A compiled module's frames are its C functions (`CPyDef_<module>___<name>`), not its file.
_TESTS: tuple[tuple[str, str | None], ...] = (
    ("authz: decision log (build, queue, write lines)", "decisionlog.py"),
    ("authz: metrics", "telemetry/metrics.py|prometheus_client"),
    (
        "authz: the decision (servicer.check, without log and metrics)",
        "^AuthorizationServicer\\.(check|_check) |^CPyDef_servicer___AuthorizationServicer___(check_wire|_check) ",
    ),
    ("gRPC server: syscalls (sendmsg/recvmsg, eventfd and futex wakeups)", None),
    (_H2, _H2_FRAMES.pattern),
    ("gRPC server: Cython/C core", "cygrpc"),
    ("asyncio event loop", "asyncio"),
)
#: The categories in the report's order.
CATEGORIES = [*(name for name, _ in _TESTS if name != _H2), "other", _H2]


def category(frames: list[str]) -> str:
    """What one sampled stack was doing: IDLE, or one of CATEGORIES."""
    if {f.split(" (", 1)[0] for f in frames} & _WAITS:
        return IDLE
    for name, pattern in _TESTS:
        if pattern is None and frames[-1].split(" (", 1)[0] in _SYSCALLS:
            return name
        if pattern is not None and any(re.search(pattern, frame) for frame in frames):
            return name
    return "other"


_COMPILED = re.compile(r"^CPy(?:Def|Py)_([a-z0-9_]+?)___(\S+) \(")


def _readable(frame: str) -> str:
    """Unresolved native frames ("0x7f.. (lib.so)") grouped by their library; a compiled
    function by its Python name and module."""
    if compiled := _COMPILED.match(frame):
        module, name = compiled.groups()
        return f"{name.replace('___', '.')} ({module}, compiled)"
    if frame.startswith("0x"):
        library = frame.partition(" (")[2].rstrip(")").split(".cpython")[0].split(".so")[0]
        return f"[native] {library}"
    return frame


def analyze(collapsed: str, *, seconds: float = 0.0, flamegraph: str = "") -> ProfileResult:
    """Read py-spy's collapsed stacks ("frame;frame;... count" per line)."""
    own, inclusive, categories = Counter[str](), Counter[str](), Counter[str]()
    total = busy = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if (kind := category(frames)) == IDLE:
            continue
        busy += int(count)
        categories[kind] += int(count)
        own[_readable(frames[-1])] += int(count)
        # Once per stack, in stack order (not a set's): equal shares rank alike in every run.
        # The h2 engine's frames are left out: they carry every check, so each would show the
        # whole of it and push the parts that say something off the table.
        for frame in dict.fromkeys(frames):
            if _H2_FRAMES.search(frame):
                continue
            if frame.startswith("CPyDef_") or (
                "authz/" in frame
                and not frame.endswith(("cli.py)", "__main__.py)", "server/eventloop.py)"))
            ):
                inclusive[_readable(frame)] += int(count)
    if busy == 0:
        raise BenchError("py-spy caught the sidecar busy in none of its samples")

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / busy) for name, count in counter.most_common(10)]

    breakdown = [(name, categories[name] / busy) for name in CATEGORIES if categories[name]]
    return ProfileResult(
        SETUP,
        seconds,
        samples=total,
        busy_samples=busy,
        flamegraph=flamegraph,
        breakdown=breakdown,
        top_self=share(own),
        top_inclusive=share(inclusive),
    )


def _py_spy(pid: int, *, seconds: float, fmt: str, output: Path) -> None:
    command = [find_binary("py-spy"), "record", "--pid", str(pid), "--native", "--rate", "200"]
    command += ["--duration", str(int(seconds)), "--format", fmt, "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not output.exists():
        raise BenchError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-1000:]}")


def record(
    current: Stack, *, token: str, config: Config, seconds: float, out: Path
) -> ProfileResult:
    """Keep SETUP under wrk's load (not a measured run) while py-spy records its sidecar."""
    running = current.get(SETUP)
    assert running.sidecar is not None  # SETUP is a sidecar's
    command = wrk_command(running.listen, config, seconds=int(2 * seconds) + 3, token=token)
    load = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    collapsed, flamegraph = out / "profile-sidecar.txt", out / "profile-sidecar.svg"
    try:
        time.sleep(1)  # wrk's connections are up and the sidecar busy before sampling starts
        for fmt, output in (("raw", collapsed), ("flamegraph", flamegraph)):
            _py_spy(running.sidecar.popen.pid, seconds=seconds, fmt=fmt, output=output)
    finally:
        load.terminate()
        load.wait()
    return analyze(collapsed.read_text(), seconds=seconds, flamegraph=str(flamegraph))
