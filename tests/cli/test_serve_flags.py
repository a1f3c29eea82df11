"""`authz serve`'s flags and AUTHZ_* variables: what they set, and clear refusals (exit 2).

`serve` is only driven as far as its configuration goes here: every case through main() ends
with exit 2 before anything listens. A refused value is named as the user set it: by its flag,
or by its environment variable when it came from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authz.errors import ConfigError
from authz.settings import ClientSettings, ListenAddress, RateLimitSettings
from authz.settings.flags import Declared, declared
from authz.settings.kinds import Amount, Count, ExistingFile, Listen, Paths, Text
from tests.cli.support import GOOD, run, serve

EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples" / "reference")

# --- policies and listeners ---------------------------------------------------------------------


def test_serve_without_policies_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["serve"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(
        "authz: error: nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES)"
    )


def test_missing_policy_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        ["serve", "--policies", str(tmp_path / "a"), "--policies", str(GOOD)], capsys
    )
    assert code == 2
    assert err == f"authz: error: --policies: {tmp_path / 'a'} does not exist\n"


def test_policies_from_the_environment_are_comma_separated(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", f" {tmp_path / 'a'} ,{GOOD},, {tmp_path / 'b'}")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == (
        f"authz: error: AUTHZ_POLICIES: {tmp_path / 'a'}, {tmp_path / 'b'} does not exist\n"
    )
    assert serve(environ={"AUTHZ_POLICIES": f"{GOOD}, ,{GOOD.parent}"}).policies.paths == (
        GOOD,
        GOOD.parent,
    )


def test_policies_flags_replace_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(tmp_path / "from-env"))
    code, _, err = run(
        ["serve", "--policies", str(tmp_path / "flag-1"), "--policies", str(tmp_path / "flag-2")],
        capsys,
    )
    assert code == 2
    assert err == (
        f"authz: error: --policies: {tmp_path / 'flag-1'}, {tmp_path / 'flag-2'} does not exist\n"
    )


@pytest.mark.parametrize("flag", ["grpc-listen", "http-listen", "admin-listen"])
def test_listen_addresses_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    env = "AUTHZ_" + flag.upper().replace("-", "_")
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv(env, "from-env")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == f"authz: error: {env}: expected HOST:PORT or unix:/path, got 'from-env'\n"
    listen = serve("--policies", str(GOOD), environ={env: "unix:///run/a.sock"})
    assert getattr(listen.server, flag.replace("-", "_")) == ListenAddress(path="/run/a.sock")


def test_flags_beat_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_GRPC_LISTEN", "from-env")
    code, _, err = run(["serve", "--grpc-listen", "from-flag"], capsys)
    assert code == 2
    assert err == "authz: error: --grpc-listen: expected HOST:PORT or unix:/path, got 'from-flag'\n"
    environ = {"AUTHZ_GRPC_LISTEN": "10.0.0.1:1", "AUTHZ_WORKERS": "3"}
    settings = serve("--policies", str(GOOD), "--grpc-listen", "unix:/run/a.sock", environ=environ)
    assert (settings.server.grpc_listen, settings.server.workers) == (
        ListenAddress(path="/run/a.sock"),
        3,
    )


# --- switches and choices -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_a_bad_boolean_in_the_environment_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_KUBERNETES", value)
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == f"authz: error: AUTHZ_KUBERNETES: expected true or false, got {value!r}\n"


@pytest.mark.parametrize(
    ("value", "kubeconfig", "error"),
    [
        ("off", "exists", "AUTHZ_KUBECONFIG needs AUTHZ_KUBERNETES"),
        ("", "exists", "AUTHZ_KUBECONFIG needs AUTHZ_KUBERNETES"),
        (
            "TRUE",
            "/nonexistent/kubeconfig",
            "AUTHZ_KUBECONFIG: /nonexistent/kubeconfig does not exist",
        ),
        (
            "1",
            "/nonexistent/kubeconfig",
            "AUTHZ_KUBECONFIG: /nonexistent/kubeconfig does not exist",
        ),
    ],
)
def test_booleans_in_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    value: str,
    kubeconfig: str,
    error: str,
) -> None:
    if kubeconfig == "exists":
        kubeconfig = str(tmp_path / "kubeconfig")
        Path(kubeconfig).write_text("{}")
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_KUBERNETES", value)
    monkeypatch.setenv("AUTHZ_NAMESPACE", "shop")
    monkeypatch.setenv("AUTHZ_KUBECONFIG", kubeconfig)
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == f"authz: error: {error}\n"


def test_a_choice_from_the_environment_is_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_LOG_LEVEL", "verbose")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == (
        "authz: error: AUTHZ_LOG_LEVEL: expected one of debug, info, warning, error, "
        "got 'verbose'\n"
    )


# --- every declared setting: a bad value is named as it was given ------------------------------


def _bad_value(setting: Declared) -> str | None:
    kind = setting.option.kind
    if isinstance(kind, Count | Amount):
        return "lots"
    if isinstance(kind, Listen):
        return "nowhere"
    if isinstance(kind, Paths | ExistingFile):
        return "/nonexistent/authz-test"
    if isinstance(kind, Text) and kind.choices:
        return "bogus"
    return None  # free text, switches (tested above): every value means something


BAD = [s for s in declared() if s.option.flag is not None and _bad_value(s) is not None]


@pytest.mark.parametrize("setting", BAD, ids=[s.option.flag for s in BAD])
def test_a_bad_value_names_the_environment_variable_or_the_flag(
    setting: Declared, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env = setting.option.flag, setting.option.env_name
    assert flag is not None
    bad = _bad_value(setting)
    assert bad is not None
    if flag != "--policies":
        monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv(env, bad)
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err.startswith(f"authz: error: {env}: "), err
    assert flag not in err
    if setting.option.kind.choices:
        return  # argparse refuses a bad choice given as a flag (usage error, tested above)
    code, _, err = run(["serve", flag, bad], capsys)
    assert code == 2
    assert err.startswith(f"authz: error: {flag}: "), err
    assert env not in err


def test_workers_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_WORKERS", "abc")
    assert run(["serve"], capsys)[1:] == (
        "",
        "authz: error: AUTHZ_WORKERS: expected a whole number from 1 to 64, got 'abc'\n",
    )
    monkeypatch.setenv("AUTHZ_WORKERS", "2")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err.startswith("authz: error: AUTHZ_WORKERS 2 needs --grpc-listen unix:PATH")
    code, _, err = run(["serve", "--workers", "2"], capsys)
    assert err.startswith("authz: error: --workers 2 needs --grpc-listen unix:PATH")


def test_help_names_the_environment_variables_defaults_and_ranges(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        run(["serve", "--help"], capsys)
    out = " ".join(capsys.readouterr().out.split())
    for setting in declared():
        if setting.option.flag is not None:
            assert f"[env {setting.option.env_name}]" in out
    assert "(1 to 64; default 1) [env AUTHZ_WORKERS]" in out
    assert "(default 127.0.0.1:9191) [env AUTHZ_GRPC_LISTEN]" in out
    assert "(one of debug, info, warning, error; default info)" in out
    assert "`" not in out


# --- Kubernetes --------------------------------------------------------------------------------


def test_kubernetes_alone_is_enough_to_serve(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("{}")
    k = serve("--kubernetes", "--kubeconfig", str(kubeconfig)).kubernetes
    assert (k.enabled, k.kubeconfig, k.namespaces, k.selector) == (True, kubeconfig, (), None)
    assert k.lease_duration == 15.0


def test_kubernetes_flags_and_environment(tmp_path: Path) -> None:
    environ = {
        "AUTHZ_KUBERNETES": "true",
        "AUTHZ_NAMESPACE": "shop, billing,shop",
        "POD_NAME": "authz-7d9f-x2x",
        "POD_NAMESPACE": "authz-system",
    }
    policies = tmp_path / "p"
    policies.mkdir()
    s = serve(
        "--selector",
        "shard=eu",
        "--policies",
        str(policies),
        "--lease-duration",
        "5",
        environ=environ,
    )
    k = s.kubernetes
    assert k.enabled
    assert k.namespaces == ("shop", "billing")
    assert (k.selector, k.identity, k.lease_namespace, k.lease_duration) == (
        "shard=eu",
        "authz-7d9f-x2x",
        "authz-system",
        5.0,
    )
    assert s.policies.paths == (policies,)  # files and cluster together


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES) and/or --kubernetes"),
        (["--policies", "p", "--namespace", "a"], "--namespace needs --kubernetes"),
        (["--policies", "p", "--selector", "a=b"], "--selector needs --kubernetes"),
        (["--policies", "p", "--lease-name", "x"], "--lease-name needs --kubernetes"),
        (
            ["--kubernetes", "--kubeconfig", "/nonexistent"],
            "--kubeconfig: /nonexistent does not exist",
        ),
        (
            ["--kubernetes", "--lease-duration", "0"],
            "--lease-duration: expected seconds from 1 to 3600, got '0'",
        ),
    ],
)
def test_kubernetes_usage_errors(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        serve(*argv)
    assert str(exc.value) == message


# --- rate limits and the client address ---------------------------------------------------------


def limits(*flags: str, environ: dict[str, str] | None = None) -> tuple[Any, Any]:
    built = serve("--policies", EXAMPLES, *flags, environ=environ)
    return built.ratelimit, built.client


def test_defaults_are_memory_and_the_peer_address() -> None:
    ratelimit, client = limits()
    assert ratelimit == RateLimitSettings()
    assert client == ClientSettings(trusted_proxy_hops=0)


def test_rate_limit_flags_reach_the_settings() -> None:
    ratelimit, client = limits(
        "--redis-url",
        "rediss://u:p@r1:7000,r2:7001",
        "--redis-mode",
        "cluster",
        "--redis-timeout-ms",
        "25",
        "--ratelimit-max-buckets",
        "5000",
        "--trusted-proxy-hops",
        "2",
    )
    assert ratelimit == RateLimitSettings(
        redis_url="rediss://u:p@r1:7000,r2:7001",
        redis_mode="cluster",
        redis_timeout=0.025,
        max_buckets=5000,
    )
    assert client == ClientSettings(trusted_proxy_hops=2)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--redis-url", "http://x"], "--redis-url: must start with redis:// or rediss://"),
        (["--redis-mode", "cluster"], "--redis-mode cluster needs --redis-url"),
        (["--redis-url", "redis://a,b"], "--redis-url: several hosts need --redis-mode"),
        (["--redis-url", "redis://a/x"], "--redis-url: the path must be a database number"),
        (["--redis-url", "redis://a:99999"], "--redis-url: bad host"),
        (["--redis-timeout-ms", "0"], "--redis-timeout-ms: expected a whole number from 1"),
        (["--trusted-proxy-hops", "-1"], "--trusted-proxy-hops: expected a whole number from 0"),
        (["--ratelimit-max-buckets", "lots"], "--ratelimit-max-buckets: expected"),
    ],
)
def test_bad_rate_limit_values_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        limits(*flags)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AUTHZ_REDIS_URL": "http://x"}, "AUTHZ_REDIS_URL: must start with redis://"),
        ({"AUTHZ_REDIS_MODE": "cluster"}, "AUTHZ_REDIS_MODE cluster needs --redis-url"),
        ({"AUTHZ_TRUSTED_PROXY_HOPS": "x"}, "AUTHZ_TRUSTED_PROXY_HOPS: expected a whole number"),
    ],
)
def test_bad_rate_limit_values_from_the_environment_name_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        limits(environ=environ)
    assert str(raised.value).startswith(message)


def test_rate_limit_environment_variables_set_the_settings() -> None:
    ratelimit, client = limits(
        environ={"AUTHZ_REDIS_TIMEOUT_MS": "200", "AUTHZ_TRUSTED_PROXY_HOPS": "1"}
    )
    assert (ratelimit.redis_timeout, client.trusted_proxy_hops) == (0.2, 1)
