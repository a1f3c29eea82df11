"""The benchmark's building blocks, run for real and quickly (no timing assertions).

A benchmark that measures a broken setup is worse than none, so these check outcomes: every
Envoy configuration passes `envoy --mode validate`, the probes accept correctly configured
setups and refuse a filter that lets everything through, wrk's output is parsed from a real
run, the scale generator writes documents that `authz validate` accepts, the microbenchmark
measures every scenario, and the report fills the document's blocks and leaves its prose alone.
wrk is required, not optional: .ci/run installs it, and a missing wrk fails here.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from authz.devtools.envoyconf import dump
from authz.server.listen import ListenAddress
from bench import __main__ as cli
from bench import hostile, macro, micro, profile, ratelimit, report, scale, stack
from bench.macro import Config, parse_wrk, run_wrk
from bench.material import make_material
from bench.procs import BenchError, find_binary
from bench.results import LoadResult, Results, RunRecord, summarize
from bench.setups import SETUPS, Setup, gateway, static_authorizer_config, upstream_config
from bench.stack import probe

MATERIAL = make_material()
ROOT = Path(__file__).resolve().parents[2]
#: One second of wrk with few connections: enough to parse a real report.
SHORT = Config(duration=1, warmup=0, rounds=1, connections=4, threads=1, quiet_wait=0)


def _sidecar_address(setup: Setup, tmp_path: Path) -> ListenAddress | None:
    if setup.transport == "unix":
        return ListenAddress(path=str(tmp_path / "authz.sock"))
    if setup.transport == "tcp":
        return ListenAddress("127.0.0.1", 9191)
    return None


def _envoy_validate(config: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(dump(config))
    done = subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("setup", SETUPS + ratelimit.SETUPS, ids=lambda s: s.name)
def test_gateway_config_passes_envoy_validate(setup: Setup, tmp_path: Path) -> None:
    config = gateway(
        setup,
        material=MATERIAL,
        listen=ListenAddress("127.0.0.1", 10000),
        admin=ListenAddress("127.0.0.1", 10001),
        upstream=ListenAddress("127.0.0.1", 10002),
        sidecar=_sidecar_address(setup, tmp_path),
    )
    _envoy_validate(config, tmp_path)


@pytest.mark.parametrize("build", [upstream_config, static_authorizer_config])
def test_static_responder_configs_pass_envoy_validate(build: Any, tmp_path: Path) -> None:
    listen, admin = ListenAddress("127.0.0.1", 10000), ListenAddress("127.0.0.1", 10001)
    _envoy_validate(build(listen=listen, admin=admin), tmp_path)


def test_wrk_is_installed() -> None:
    assert find_binary("wrk")


def test_stack_probes_and_a_real_wrk_run_parse(tmp_path: Path) -> None:
    """The real stack: probes pass for jwt_authn and the sidecar; a 1 s wrk run is parsed."""
    chosen = tuple(s for s in SETUPS if s.name in {"noauth", "jwt_authn", "sidecar-uds"})
    with stack.stack(
        chosen, material=MATERIAL, envoy_concurrency=1, logs=tmp_path / "logs"
    ) as current:
        probes = stack.probe_all(current, MATERIAL)
        assert probes["sidecar-uds"] == [
            "valid token -> 200",
            "no token -> 401",
            "forged signature -> 401",
            "token without the scope -> 403",
        ]
        assert "valid token -> 200" in probes["jwt_authn"]
        record, output = macro.measure(
            current, current.get("jwt_authn"), config=SHORT, token=MATERIAL.token
        )
    assert "BENCH_RESULT" in output
    result = record.wrk
    assert result.requests > 0
    assert result.rps > 0
    assert result.failed == 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.p999_ms
    assert record.cpu_s["gateway"] > 0


def test_probe_refuses_a_filter_that_lets_everything_through(tmp_path: Path) -> None:
    """A gateway without auth, probed as if it were jwt_authn, must stop the benchmark."""
    noauth = next(s for s in SETUPS if s.name == "noauth")
    with stack.stack(
        (noauth,), material=MATERIAL, envoy_concurrency=1, logs=tmp_path / "logs"
    ) as current:
        running = current.get("noauth")
        pretending = next(s for s in SETUPS if s.name == "jwt_authn")
        with pytest.raises(BenchError, match=r"^jwt_authn: (valid token|no token)"):
            probe(pretending, running.listen, MATERIAL)
        # And wrk against it works, so the refusal is the probe's doing.
        result, output = run_wrk(running.listen, SHORT, seconds=1, token=None)
        assert "BENCH_RESULT" in output
        assert result.requests > 0


def test_parse_wrk_without_the_lua_line_fails_loudly() -> None:
    with pytest.raises(BenchError, match="no BENCH_RESULT"):
        parse_wrk("Running 1s test @ http://127.0.0.1:1/\nRequests/sec: 10.00\n")


def test_schedule_interleaves_and_alternates() -> None:
    assert macro.schedule(["a", "b", "c"], 2) == [
        (1, "a"),
        (1, "b"),
        (1, "c"),
        (2, "c"),
        (2, "b"),
        (2, "a"),
    ]


def test_scale_documents_pass_authz_validate(tmp_path: Path) -> None:
    files, size = scale.generate(tmp_path / "policies", 150, MATERIAL)
    assert files == 2
    assert size > 0
    done = subprocess.run(
        [sys.executable, "-m", "authz", "validate", str(tmp_path / "policies")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "150 valid, 0 invalid" in done.stdout


def test_micro_measures_every_scenario() -> None:
    results = micro.run_micro(MATERIAL, iterations=50, repeats=1)
    assert [m.name for m in results] == [
        "decide-warm",
        "check-bare",
        "check-warm",
        "check-traced",
        "wire-warm",
        "check-cold",
        "h2-warm",
        "deny-no-token",
    ]
    for m in results:
        assert m.wall_us > 0, m
        assert m.cpu_us > 0, m
        assert m.peak_bytes > 0, m


def _record(setup: str, rps: float, p99: float) -> RunRecord:
    wrk = parse_wrk(
        f"Requests/sec: {rps:.2f}\nBENCH_RESULT requests={int(rps * 10)} duration_us=10000000 "
        f"bytes=1 connect=0 read=0 write=0 status=0 timeout=0 p50_us=1000 p90_us=1500 "
        f"p99_us={int(p99 * 1000)} p999_us={int(p99 * 1500)} max_us={int(p99 * 2000)} "
        f"mean_us=1100.0 stdev_us=10.0\n"
    )
    return RunRecord(
        setup=setup,
        round=1,
        wrk=wrk,
        cpu_s={"gateway": 1.0},
        machine_busy=0.9,
        other_cpu_s=0.1,
    )


def _results() -> Results:
    results = Results(
        started="now",
        command="make bench",
        machine={"cpus": "2"},
        config={**asdict(SHORT), "micro_repeats": 1, "micro_iterations": 1},
    )
    setups = [
        summarize("jwt_authn", "native", [_record("jwt_authn", 10_000, 4.0)]),
        summarize("sidecar-tcp", "sidecar", [_record("sidecar-tcp", 4_000, 8.0)]),
    ]
    results.load = LoadResult(setups=setups, runs=[], probes={"jwt_authn": ["ok -> 200"]})
    return results


def test_report_fills_the_documents_blocks_and_keeps_its_prose() -> None:
    results = _results()
    template = (ROOT / "docs" / "performance.md").read_text()
    text = report.render(results, template)
    assert (
        "| `sidecar-tcp` / `jwt_authn` | 0.400 | >= 0.5 | **not met** | 2.00 | <= 2 | **met** |"
        in text
    )
    assert "Probed before timing: `jwt_authn`: ok -> 200." in text
    # Every section has its block in the document, and the prose around them is kept.
    assert text.count("Not measured in this run") >= 3
    assert "## Redis-shared versus local rate limits" in text
    assert "Tried and dropped" in text
    assert len(text.split("\n## ")) == len(template.split("\n## "))
    assert report.render(results, text) == text


def test_an_attack_is_measured_beside_a_legitimate_client(tmp_path: Path) -> None:
    result = hostile.measure("h2", "continuation-flood", logs=tmp_path, duration=1)
    assert result.cut_off
    assert result.goaway == [11]
    assert result.checks > 0
    assert not result.failed
    results = _results()
    results.hostile = [result]
    template = (ROOT / "docs" / "performance.md").read_text()
    assert "| continuation-flood | `h2` |" in report.render(results, template)


def test_report_refuses_a_document_without_a_block() -> None:
    template = (ROOT / "docs" / "performance.md").read_text()
    with pytest.raises(ValueError, match="bench:micro"):
        report.render(_results(), template.replace("<!-- /bench:micro -->", ""))


def test_the_machines_speed_is_recorded_before_each_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def part(results: Results, _config: Config, _say: Any) -> None:
        seen.append(results.machine[cli.REFERENCE_KEY])

    monkeypatch.setattr(cli, "PARTS", {"first": part, "second": part})
    monkeypatch.setattr(cli, "OUT", tmp_path)
    monkeypatch.setattr(cli, "DOCS", ROOT / "docs" / "performance.md")
    assert cli.main(["--quick", "--only", "first,second"]) == 0
    first, second = (entry.split(", ") for entry in seen)
    assert [e.split()[0] for e in first] == ["first"]
    assert [e.split()[0] for e in second] == ["first", "second"]
    assert all(float(e.split()[1]) > 0 and e.endswith(" µs") for e in second)
    assert f"| {cli.REFERENCE_KEY} | {seen[-1]} |" in (tmp_path / "performance.md").read_text()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--only", "load,nonsense"])
    assert exited.value.code == 2
    assert "unknown part(s) ['nonsense']" in capsys.readouterr().err
    for bad in (["--duration", "ten"], ["--rounds", "0"], ["--connections", "-1"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(bad)
        assert exited.value.code == 2
    assert "not a whole number of at least 1: '-1'" in capsys.readouterr().err
    assert cli.seconds("1m") == 60


COLLAPSED = """\
main (authz/cli.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1);epoll_wait (libc.so.6) 50
main (authz/cli.py:1);Handle._run (asyncio/events.py:1);0x7f00 (grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so);sendmsg (libc.so.6) 30
main (authz/cli.py:1);run (authz/server/eventloop.py:1);Handle._run (asyncio/events.py:1);AuthorizationServicer.check (authz/server/servicer.py:9);decide (authz/pipeline/decide.py:3) 15
Thread.run (threading.py:1);LineWriter._run (authz/telemetry/decisionlog.py:5);write (libc.so.6) 5
"""


def test_profile_analysis_leaves_waiting_out_and_splits_the_rest() -> None:
    found = profile.analyze(COLLAPSED)
    assert (found.samples, found.busy_samples) == (100, 50)
    shares = dict(found.breakdown)
    assert shares["gRPC server: syscalls (sendmsg/recvmsg, eventfd and futex wakeups)"] == 0.6
    assert shares["authz: the decision (servicer.check, without log and metrics)"] == 0.3
    assert shares["authz: decision log (build, queue, write lines)"] == 0.1
    assert ("decide (authz/pipeline/decide.py)", 0.3) in found.top_inclusive
    # What every stack goes through (the process's entry, its event loop) says nothing.
    assert [n for n, _ in found.top_inclusive if "cli.py" in n or "eventloop.py" in n] == []


#: The same sidecar with its check path compiled: its frames are C functions named after the
#: Python ones, inside the asyncio event loop's frames.
COMPILED_STACKS = """\
run (asyncio/runners.py:1);uv_run (core.c:1);CPyDef_h2conn___Connection___data_received (__native_authz.c:7);CPyDef_servicer___AuthorizationServicer____check (__native_authz.c:9);CPyDef_decide___decide_now (__native_authz.c:3) 6
run (asyncio/runners.py:1);uv_run (core.c:1);CPyDef_h2conn___Connection___data_received (__native_authz.c:7);CPyDef_h2frames___frame (__native_authz.c:2) 3
run (asyncio/runners.py:1);uv_run (core.c:1);uv__io_poll (linux.c:1) 1
"""


def test_profile_analysis_places_compiled_frames_by_their_python_names() -> None:
    found = profile.analyze(COMPILED_STACKS)
    shares = dict(found.breakdown)
    assert shares["authz: the decision (servicer.check, without log and metrics)"] == 0.6
    assert shares["h2 engine: HTTP/2 frames, HPACK, gRPC framing (authz/server/h2*.py)"] == 0.3
    assert shares["asyncio event loop"] == 0.1
    assert ("decide_now (decide, compiled)", 0.6) in found.top_inclusive
    # The h2 engine carries every check: its frames would head the inclusive table, saying nothing.
    assert [name for name, _ in found.top_inclusive if "h2" in name] == []
    assert ("frame (h2frames, compiled)", 0.3) in found.top_self
