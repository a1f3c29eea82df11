"""The suite's two tiers, and the versions of the real parts at the top of every run.

`make test` runs every test. `make test-fast` (`pytest --fast`) deselects - never skips - the
integration tests: those that start a real part in its own process (Envoy, Redis, wrk, the Helm
engine, the fake Kubernetes API server, the authorization server). Which tests those are is
decided here, from where a test lives and which fixtures it uses, so a new test is classified
without anyone marking it:

- every test under one of INTEGRATION_DIRS;
- every test that uses (directly or through other fixtures) one of INTEGRATION_FIXTURES: a new
  test gets the fake Kubernetes API server through `kube` or `start_kube`, Redis through
  `redis_server`, `killable_redis` or `redis_cluster`, the authorization server (oidc-provider
  on Node.js) through `start_oidc`.

A test that starts such a part some other way fails in the fast tier with a message saying so
(tests/support/tiers.py, called where the parts start), instead of quietly making it slow.

`make unit` (`--dist loadgroup`) spreads the suite over xdist workers and keeps the integration
tests one at a time in one of them; tests/support/schedule.py says how.

The fake Kubernetes API server's fixtures live here too, since the controller's and the CRD's
tests both use them.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from authz import compiled
from tests import provision
from tests.support import schedule, tiers

if TYPE_CHECKING:
    from tests.controller.harness import Cluster
    from tests.support.fakekube import FakeKube
    from tests.support.oidc import OidcProvider

TESTS = Path(__file__).resolve().parent
INTEGRATION_DIRS = {
    "e2e": "Envoy in front of the sidecar",
    "deploy": "the Helm engine and Envoy",
    "bench": "wrk and the benchmark stacks",
}
#: Where the workers list the lane's tests for the controller's scheduler (make unit).
LISTS = pytest.StashKey["tempfile.TemporaryDirectory[str]"]()
INTEGRATION_FIXTURES = {
    "start_kube": "the fake Kubernetes API server",
    "redis_server": "redis-server",
    "killable_redis": "redis-server",
    "redis_cluster": "a Redis Cluster",
    "compiled_check_path": "the compiled check path (`make test` builds it)",
    "start_oidc": "oidc-provider (Node.js)",
}
#: Integration fixtures whose part waits on no deadline or lease, and competes for nothing but
#: the CPU: `make unit` runs their tests beside the lane (tests/support/schedule.py).
BESIDE_THE_LANE_FIXTURES = frozenset({"start_oidc"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="deselect the integration tests (make test-fast); tests/conftest.py says which",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("fast"):
        tiers.enter_fast_tier()
    controller = not hasattr(config, "workerinput")
    if controller and config.getoption("dist", "no") == "loadgroup":
        config.stash[LISTS] = tempfile.TemporaryDirectory(prefix="pytest-integration-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if LISTS in config.stash:
        config.stash[LISTS].cleanup()


def integration_reason(item: pytest.Item) -> str | None:
    """Why a test belongs to the integration tier, or None for a unit / in-process test."""
    relative = item.path.relative_to(TESTS).parts if item.path.is_relative_to(TESTS) else ()
    if len(relative) > 1 and relative[0] in INTEGRATION_DIRS:
        return INTEGRATION_DIRS[relative[0]]
    for name in getattr(item, "fixturenames", ()):
        if name in INTEGRATION_FIXTURES:
            return INTEGRATION_FIXTURES[name]
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fast, deselected = [], []
    for item in items:
        reason = integration_reason(item)
        if reason is None:
            fast.append(item)
        else:
            item.add_marker(pytest.mark.integration(reason))
            deselected.append(item)
    lane = (
        item.nodeid
        for item in deselected
        if schedule.in_lane(item, INTEGRATION_FIXTURES, beside=BESIDE_THE_LANE_FIXTURES)
    )
    schedule.write_list(config, lane)
    if config.getoption("fast") and deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = fast


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (make unit): the integration tests in one worker, one at a time,
    beside the in-process tests (tests/support/schedule.py)."""
    if config.getoption("dist") != "loadgroup":
        return None
    return schedule.IntegrationApart(config, log, lists=Path(config.stash[LISTS].name))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if LISTS in node.config.stash:
        node.workerinput[schedule.LISTS] = str(node.config.stash[LISTS].name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    schedule.yield_cpu(item)


def real_parts() -> list[str]:
    """The versions of the real parts this run uses, as pinned in tests/versions.toml."""
    pins = provision.pins()
    pypi = []
    for name in pins.get("pypi", {}):
        try:
            pypi.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pypi.append(f"{name} not installed")
    system = [
        f"{command} {provision.installed_version(command) or 'not installed'}"
        for command in pins.get("system", {})
    ]
    npm = [
        f"{folder.relative_to(provision.ROOT)} ("
        + ", ".join(f"{n} {v}" for n, v in provision.locked_packages(folder).items())
        + ")"
        for folder in provision.npm_folders()
    ]
    return [
        "real parts (tests/versions.toml): " + ", ".join(pypi + system),
        "npm folders: " + ("; ".join(npm) or "none"),
        f"check path: {compiled.MODE}",
    ]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return real_parts()


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """`pytest -q` (what make runs) has no header: print the versions there too."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.option.verbose < 0:
        for line in real_parts():
            reporter.write_line(line)


@pytest.fixture
def compiled_check_path() -> None:
    """The check path must run compiled here: `make test` (re)builds it before the tests.
    `make test-fast` does not; after an edit it tests the Python source (authz/compiled.py)."""
    assert compiled.COMPILED, f"the check path is not compiled: {compiled.MODE}"


@pytest.fixture(scope="session")
def start_oidc() -> Callable[..., OidcProvider]:
    """OidcProvider.start (tests/support/oidc): a real authorization server in its own process;
    use it as a context manager, so the provider stops with the test or module that started it."""
    from tests.support.oidc import OidcProvider

    return OidcProvider.start


@pytest.fixture
def start_kube(tmp_path: Path) -> Iterator[Callable[..., FakeKube]]:
    """Start fake API servers (FakeKube.start's options); each is stopped after the test."""
    from tests.support.fakekube import FakeKube

    started: list[FakeKube] = []

    def start(**options: Any) -> FakeKube:
        server = FakeKube.start(tmp_path / f"kube-{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def kube(start_kube: Callable[..., FakeKube]) -> FakeKube:
    """The fake API server (its own process) with the AuthPolicy CRD installed."""
    return start_kube(bookmark_interval=0.3)


@pytest.fixture
def k8s(kube: FakeKube) -> Iterator[Cluster]:
    """The test's own client of `kube`: create, patch, delete and read AuthPolicies."""
    from tests.controller.harness import cluster

    with cluster(kube) as c:
        yield c
