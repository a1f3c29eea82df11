"""The benchmark's TLS part, run for real and small (no timing assertions): Envoy calls three
sidecars over plaintext, TLS and mutual TLS, the probes pass through each, and the report renders
the side-by-side table with the throughput target."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.macro import Config, load_test
from bench.material import make_material
from bench.results import Results
from bench.setups import TLS_SETUPS

ROOT = Path(__file__).resolve().parents[2]


def test_tls_under_load_and_the_report(tmp_path: Path) -> None:
    config = Config(duration=1, warmup=0, rounds=1, quiet_wait=0, retries=0)
    material = make_material()
    outcome = load_test(TLS_SETUPS, material=material, config=config, logs=tmp_path, say=print)
    assert [s.setup for s in outcome.setups] == ["tls-off", "tls", "mtls"]
    for name in ("tls-off", "tls", "mtls"):
        assert "token without the scope -> 403" in outcome.probes[name]
        assert "valid token -> 200" in outcome.probes[name]
    assert all(s.rps > 0 for s in outcome.setups)
    results = Results(started="now", command="make bench", machine={}, config={})
    results.tls_load = outcome
    text = report.render(results, (ROOT / "docs" / "performance.md").read_text())
    assert "| `mtls` the same over mutual TLS (--tls-client-ca) |" in text
    assert "vs plaintext" in text
