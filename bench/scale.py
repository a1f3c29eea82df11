"""Policy scale: 1 k and 10 k AuthPolicy documents, each a service's own host, loaded by a child
process through the service's own code (docs/performance.md says what each number is). A fresh
process per load keeps one measurement's memory out of the next one's RSS. Each size is loaded
in REPEATS processes: times are the best of them (other work on the machine only ever adds
time), memory the largest.

"Ready" is the time from starting the child to its first snapshot, less the same for one policy:
the parent takes the time just before it starts the child, and the child reads the same
system-wide monotonic clock once the load is done.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.material import Material, sidecar_policy
from bench.procs import BenchError
from bench.results import ScaleResult

PER_FILE = 100
REPEATS = 3
#: Largest of these across repeats; every other number is the smallest.
_WORST = ("rss_before_mb", "rss_after_mb")
#: The write rule's per-user limit (requests a minute): never reached, only compiled.
WRITES_PER_MINUTE = 600


def host(index: int) -> str:
    return f"svc-{index:05d}.scale.bench.local"


def generate(directory: Path, count: int, material: Material) -> tuple[int, int]:
    """Write `count` policies as YAML files; returns (files, bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = written = 0
    for start in range(0, count, PER_FILE):
        docs = [
            sidecar_policy(
                material, name=f"svc-{i:05d}", hosts=(host(i),), writes=WRITES_PER_MINUTE
            )
            for i in range(start, min(start + PER_FILE, count))
        ]
        text = yaml.safe_dump_all(docs, sort_keys=False)
        (directory / f"policies-{start // PER_FILE:04d}.yaml").write_text(text)
        files, written = files + 1, written + len(text.encode())
    return files, written


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def _lookup_ns(lookup: Any, hosts: list[str], passes: int = 100) -> float:
    """ns per lookup, less the bare loop's cost."""
    start = time.perf_counter_ns()
    for _ in range(passes):
        for name in hosts:
            lookup(name)
    spent, start = time.perf_counter_ns() - start, time.perf_counter_ns()
    for _ in range(passes):
        for _name in hosts:
            pass
    return max(spent - (time.perf_counter_ns() - start), 0) / (passes * len(hosts))


def _timed(action: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return action(*args), time.perf_counter() - start


def _as_from_kubernetes(documents: list[Any]) -> list[Any]:
    """The documents as the Kubernetes source builds them from the API server's objects."""
    from authz.controller.documents import to_document

    converted = []
    for index, doc in enumerate(documents):
        meta = doc.body["metadata"]
        server_fields = {"uid": f"00000000-0000-4000-8000-{index:012d}", "generation": 1}
        server_fields.update(resourceVersion=str(100_000 + index))
        server_fields.update(creationTimestamp="2026-01-01T00:00:00Z")
        body = {**doc.body, "metadata": {**meta, **server_fields}}
        body["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        converted.append(to_document(f"{meta['namespace']}/{meta['name']}", body))
    return converted


def _reload(source: Any, directory: Path) -> float:
    """FileSource.load after one file changed: every file is read again, one policy compiled."""
    first = sorted(directory.glob("*.yaml"))[0]
    text = first.read_text()
    first.write_text(text.replace("allOf:", "anyOf:", 1))
    reloaded, seconds = _timed(source.load)
    first.write_text(text)
    if reloaded is None:
        raise BenchError("scale: the file source did not notice the changed file")
    return float(seconds)


async def _child(directory: Path, count: int, token: str, started: float) -> dict[str, float]:
    import aiohttp

    import authz.app  # noqa: F401 - the service's imports, for a comparable baseline RSS
    from authz.controller.documents import SOURCE_NAME
    from authz.jwt.providers import KeyRegistry
    from authz.jwt.verify import Verifier
    from authz.pipeline.decide import decide
    from authz.pipeline.request import CheckInput
    from authz.policy.store import PolicyStore
    from authz.settings import JwksSettings
    from authz.sources.files import FileSource
    from authz.sources.yamlfiles import read_all

    found: dict[str, float] = {"rss_before_mb": _rss_mb()}
    async with aiohttp.ClientSession() as session:
        registry = KeyRegistry(settings=JwksSettings(), session=session)
        store = PolicyStore(bind=registry.provider, publish=lambda _s: None, retain=registry.retain)
        source = FileSource((directory,), update=store.update)
        start, cpu = time.perf_counter(), time.process_time()
        snapshot = await asyncio.to_thread(source.load)
        found.update(load_s=time.perf_counter() - start, load_cpu_s=time.process_time() - cpu)
        found.update(started_s=time.monotonic() - started, started_cpu_s=time.process_time())
        if snapshot is None or len(snapshot.policies) != count:
            raise BenchError(f"scale: not all {count} policies loaded: {snapshot}")
        found.update(rss_after_mb=_rss_mb())

        rng = random.Random(7)  # noqa: S311 - a reproducible sample, not a secret
        present = [host(rng.randrange(count)) for _ in range(1000)]
        found["lookup_hit_ns"] = _lookup_ns(snapshot.lookup, present)
        found["lookup_miss_ns"] = _lookup_ns(
            snapshot.lookup, [f"missing-{i}.scale.bench.local" for i in range(1000)]
        )

        verifier, headers = Verifier(), {"authorization": f"Bearer {token}"}
        request = CheckInput("GET", present[0], "/bench/items/42", headers=headers)
        decision = await decide(snapshot, request, verifier=verifier, now=time.time())
        if not decision.allowed:
            raise BenchError(f"scale: the token was refused at {present[0]}: {decision.reason}")
        start = time.perf_counter()
        for _ in range(2000):
            await decide(snapshot, request, verifier=verifier, now=time.time())
        found["decide_us"] = (time.perf_counter() - start) / 2000 * 1e6

        # The split of load_s, into fresh stores (the caches of the first would make it free).
        documents, found["read_s"] = _timed(lambda: read_all((directory,))[0])
        fresh = PolicyStore(bind=registry.provider, publish=lambda _s: None)
        _, found["compile_s"] = _timed(fresh.update, "files", documents)
        converted = _as_from_kubernetes(documents)
        kube = PolicyStore(bind=registry.provider, publish=lambda _s: None)
        compiled, found["k8s_compile_s"] = _timed(kube.update, SOURCE_NAME, converted)
        if len(compiled.policies) != count:
            raise BenchError(f"scale: {len(compiled.policies)} of {count} from Kubernetes")
        found["reload_s"] = _reload(source, directory)
        await registry.close()
    return found


def _run_child(directory: Path, count: int, material: Material) -> dict[str, float]:
    """One child's numbers; it gets the token and the time it was started as arguments."""
    argv = [str(directory), str(count), material.token, repr(time.monotonic())]
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", *argv], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise BenchError(f"scale child for {count} policies failed:\n{done.stderr[-3000:]}")
    values: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return values


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: (max if key in _WORST else min)(run[key] for run in runs) for key in runs[0]}


def measure(count: int, material: Material, *, repeats: int = REPEATS) -> ScaleResult:
    with tempfile.TemporaryDirectory(prefix="authz-bench-scale-") as tmp:
        directory, one = Path(tmp) / "policies", Path(tmp) / "one"
        files, size = generate(directory, count, material)
        generate(one, 1, material)
        # Interleaved, so that a busy moment of the machine is not all in one of the two.
        runs, baseline = [], []
        for _ in range(repeats):
            runs.append(_run_child(directory, count, material))
            baseline.append(_run_child(one, 1, material))
    values, base = _best(runs), _best(baseline)
    started, started_cpu = values.pop("started_s"), values.pop("started_cpu_s")
    return ScaleResult(
        policies=count,
        files=files,
        yaml_bytes=size,
        repeats=repeats,
        ready_s=max(started - base["started_s"], 0.0),
        ready_cpu_s=max(started_cpu - base["started_cpu_s"], 0.0),
        **values,
    )


if __name__ == "__main__":  # the child: DIR COUNT TOKEN STARTED -> the numbers as JSON
    directory, count, token, started = sys.argv[1:5]
    print(json.dumps(asyncio.run(_child(Path(directory), int(count), token, float(started)))))
