"""What a result was measured on: numbers without the machine and versions cannot be compared."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from bench.procs import BenchError, find_binary

ROOT = Path(__file__).resolve().parents[1]


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _version(tool: str, flag: str) -> str:
    try:
        return _first_line([find_binary(tool), flag])
    except BenchError:
        return "not installed"


def _commit() -> str:
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "authz"])
    return commit + (" (authz/ has uncommitted changes)" if dirty not in {"", "unknown"} else "")


def machine_info() -> dict[str, str]:
    envoy = _version("envoy", "--version")
    packages = {}
    for name in ("grpcio", "protobuf", "PyJWT", "cryptography"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    load1, load5, _ = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cpus": f"{os.cpu_count()} (usable by the bench: {len(os.sched_getaffinity(0))})",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "envoy": envoy.split("version:")[-1].strip().partition("/")[2] or envoy,
        "wrk": _version("wrk", "-v").split(" Copyright")[0],
        "packages": ", ".join(f"{k} {v}" for k, v in packages.items()),
        "commit": _commit(),
        "load average at start": f"{load1:.2f} (1 min), {load5:.2f} (5 min)",
    }
