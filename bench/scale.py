"""Policy scale: 1 k and 10 k AuthPolicy documents, each with its own host.

The documents are generated into a temporary directory (100 per file, as a team with many
services might keep them) and loaded by a child process through the service's own code: the
file source reads them, the PolicyStore compiles them with the service's KeyRegistry and builds
the host index. A fresh process per size keeps one measurement's memory out of the next one's
RSS; it imports authz.app first, so the baseline is what `authz serve` has loaded anyway.

Each size is loaded in REPEATS fresh processes; times are the best of them (as timeit does:
other work on the machine only ever adds time), memory the largest. Besides the file source's
load, the child times the Kubernetes source's compile (the same documents as the controller
hands them over, into a fresh PolicyStore), and a reload after one file changed.

Lookup time is Snapshot.lookup over hosts that exist and hosts that do not, minus the cost of
the bare loop; it should not depend on how many policies there are (one dict probe per label).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.material import Material, sidecar_policy
from bench.procs import BenchError
from bench.results import ScaleResult

PER_FILE = 100
LOOKUPS = 1000
LOOKUP_PASSES = 100
REPEATS = 3
#: Largest of these across repeats; every other number is the smallest.
_WORST = ("rss_before_mb", "rss_after_mb", "peak_rss_mb")


def host(index: int) -> str:
    return f"svc-{index:05d}.scale.bench.local"


def document(material: Material, index: int) -> dict[str, Any]:
    return sidecar_policy(material, name=f"svc-{index:05d}", hosts=(host(index),))


def generate(directory: Path, count: int, material: Material) -> tuple[int, int]:
    """Write `count` policies as YAML files; returns (files, bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = written = 0
    for start in range(0, count, PER_FILE):
        docs = [document(material, i) for i in range(start, min(start + PER_FILE, count))]
        text = yaml.safe_dump_all(docs, sort_keys=False)
        (directory / f"policies-{start // PER_FILE:04d}.yaml").write_text(text)
        files += 1
        written += len(text.encode())
    return files, written


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _lookup_ns(lookup: Any, hosts: list[str]) -> float:
    start = time.perf_counter_ns()
    for _ in range(LOOKUP_PASSES):
        for name in hosts:
            lookup(name)
    spent = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    for _ in range(LOOKUP_PASSES):
        for _name in hosts:
            pass
    bare = time.perf_counter_ns() - start
    return max(spent - bare, 0) / (LOOKUP_PASSES * len(hosts))


def _kubernetes_compile(documents: list[Any], *, bind: Any) -> float:
    """PolicyStore.update with the documents as the Kubernetes source builds them from objects
    the API server returns (uid, resourceVersion, generation, creationTimestamp, status)."""
    from authz.controller.documents import SOURCE_NAME, to_document
    from authz.policy.store import PolicyStore

    converted = []
    for index, doc in enumerate(documents):
        body = dict(doc.body)
        meta = body["metadata"]
        body["metadata"] = {
            **meta,
            "uid": f"00000000-0000-4000-8000-{index:012d}",
            "resourceVersion": str(100_000 + index),
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        }
        body["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        converted.append(to_document(f"{meta['namespace']}/{meta['name']}", body))
    store = PolicyStore(bind=bind, publish=lambda _s: None)
    start = time.perf_counter()
    snapshot = store.update(SOURCE_NAME, converted)
    elapsed = time.perf_counter() - start
    if len(snapshot.policies) != len(documents):
        raise BenchError(f"scale: {len(snapshot.policies)} of {len(documents)} from Kubernetes")
    return elapsed


def _reload(source: Any, directory: Path) -> float:
    """FileSource.load after one file changed: every file is read again, one policy compiled."""
    first = sorted(directory.glob("*.yaml"))[0]
    text = first.read_text()
    first.write_text(text.replace("allOf:", "anyOf:", 1))
    start = time.perf_counter()
    snapshot = source.load()
    elapsed = time.perf_counter() - start
    first.write_text(text)
    if snapshot is None:
        raise BenchError("scale: the file source did not notice the changed file")
    return elapsed


async def _child(directory: Path, count: int, token: str) -> dict[str, float]:
    import aiohttp

    import authz.app  # noqa: F401 - the service's imports, for a comparable baseline RSS
    from authz.jwt.providers import KeyRegistry
    from authz.jwt.verify import Verifier
    from authz.pipeline.decide import decide
    from authz.pipeline.request import CheckInput
    from authz.policy.store import PolicyStore
    from authz.settings import JwksSettings
    from authz.sources.files import FileSource
    from authz.sources.yamlfiles import read_all

    rss_before = _rss_mb()
    async with aiohttp.ClientSession() as session:
        registry = KeyRegistry(settings=JwksSettings(), session=session)
        store = PolicyStore(bind=registry.provider, publish=lambda _s: None, retain=registry.retain)
        source = FileSource((directory,), update=store.update)
        start, cpu = time.perf_counter(), time.process_time()
        snapshot = await asyncio.to_thread(source.load)
        load_s = time.perf_counter() - start
        load_cpu_s = time.process_time() - cpu
        if snapshot is None or len(snapshot.policies) != count:
            got = 0 if snapshot is None else len(snapshot.policies)
            raise BenchError(f"scale: {got} of {count} policies loaded")
        rss_after = _rss_mb()
        peak = _peak_rss_mb()

        rng = random.Random(7)  # noqa: S311 - a reproducible sample, not a secret
        present = [host(rng.randrange(count)) for _ in range(LOOKUPS)]
        absent = [f"missing-{i}.scale.bench.local" for i in range(LOOKUPS)]
        hit_ns = _lookup_ns(snapshot.lookup, present)
        miss_ns = _lookup_ns(snapshot.lookup, absent)

        verifier = Verifier()
        request = CheckInput(
            method="GET",
            host=present[0],
            raw_path="/bench/items/42",
            headers={"authorization": f"Bearer {token}"},
        )
        decision = await decide(snapshot, request, verifier=verifier, now=time.time())
        if not decision.allowed:
            raise BenchError(f"scale: the token was refused at {present[0]}: {decision.reason}")
        rounds = 2000
        start = time.perf_counter()
        for _ in range(rounds):
            await decide(snapshot, request, verifier=verifier, now=time.time())
        decide_us = (time.perf_counter() - start) / rounds * 1e6

        # The split of load_s, on a fresh store (the caches of the first would make it free).
        start = time.perf_counter()
        documents, _files = read_all((directory,))
        read_s = time.perf_counter() - start
        fresh = PolicyStore(bind=registry.provider, publish=lambda _s: None)
        start = time.perf_counter()
        fresh.update("files", documents)
        compile_s = time.perf_counter() - start
        k8s_compile_s = _kubernetes_compile(documents, bind=registry.provider)
        reload_s = _reload(source, directory)
        await registry.close()
    return {
        "read_s": read_s,
        "compile_s": compile_s,
        "load_s": load_s,
        "load_cpu_s": load_cpu_s,
        "k8s_compile_s": k8s_compile_s,
        "reload_s": reload_s,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "peak_rss_mb": peak,
        "lookup_hit_ns": hit_ns,
        "lookup_miss_ns": miss_ns,
        "decide_us": decide_us,
    }


def _run_child(directory: Path, count: int, material: Material) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", str(directory), "--count", str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "BENCH_TOKEN": material.token},
    )
    if done.returncode != 0:
        raise BenchError(f"scale child for {count} policies failed:\n{done.stderr[-3000:]}")
    values: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return values


def measure(count: int, material: Material, *, repeats: int = REPEATS) -> ScaleResult:
    with tempfile.TemporaryDirectory(prefix="authz-bench-scale-") as tmp:
        directory = Path(tmp) / "policies"
        files, size = generate(directory, count, material)
        runs = [_run_child(directory, count, material) for _ in range(repeats)]
    values = {key: (max if key in _WORST else min)(run[key] for run in runs) for key in runs[0]}
    return ScaleResult(policies=count, files=files, yaml_bytes=size, repeats=repeats, **values)


def main(argv: list[str] | None = None) -> int:
    """Child entry point: load DIR as the service would and print the numbers as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    token = os.environ.get("BENCH_TOKEN", "")
    print(json.dumps(asyncio.run(_child(args.directory, args.count, token))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
