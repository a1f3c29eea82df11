"""What a result was measured on: numbers without the machine and versions cannot be compared."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from bench.procs import BenchError, find_binary

ROOT = Path(__file__).resolve().parents[1]


def _first_line(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _version(tool: str, flag: str) -> str:
    try:
        return _first_line(find_binary(tool), flag)
    except BenchError:
        return "not installed"


def _package(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} not installed"


def machine_info() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [
        line.partition(":")[2].strip() for line in cpuinfo.splitlines() if "model name" in line
    ]
    envoy = _version("envoy", "--version")
    commit = _first_line("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    if _first_line("git", "-C", str(ROOT), "status", "--porcelain", "--", "authz") != "unknown":
        commit += " (authz/ has uncommitted changes)"
    load1, load5, _ = os.getloadavg()
    return {
        "cpu": models[0] if models else platform.processor() or "unknown",
        "cpus": f"{os.cpu_count()} (usable by the bench: {len(os.sched_getaffinity(0))})",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "envoy": envoy.split("version:")[-1].strip().partition("/")[2] or envoy,
        "wrk": _version("wrk", "-v").split(" Copyright")[0],
        "packages": ", ".join(map(_package, ("grpcio", "protobuf", "PyJWT", "cryptography"))),
        "commit": commit,
        "load average at start": f"{load1:.2f} (1 min), {load5:.2f} (5 min)",
    }
