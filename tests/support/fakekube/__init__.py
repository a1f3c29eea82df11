"""A protocol-faithful fake Kubernetes API server, run in its own process, for controller tests.

No real kube-apiserver can run where these tests run, and a fake monkeypatched into the client
proves nothing about the wire. This one serves real HTTP to the real ``kubernetes`` client:
AuthPolicy (from the CRD in deploy/crds, with its status subresource and structural schema),
coordination.k8s.io Leases and Events (core v1 and events.k8s.io); lists with resourceVersion,
selectors and paging; chunked watch streams with bookmarks and 410 Expired; and a control API that
breaks things the way clusters do. Usage::

    from tests.support.fakekube import FakeKube
    from tests.support.fakekube.streams import WatchThread

    @pytest.fixture
    def kube(tmp_path: Path) -> Iterator[FakeKube]:
        with FakeKube.start(tmp_path, bookmark_interval=0.2) as kube:
            yield kube

    def test_controller_survives_a_dropped_watch(kube: FakeKube) -> None:
        api_client = kube.api_client()  # or load_kube_config(config_file=str(kube.kubeconfig_path))
        ...start the controller with api_client...
        kube.wait_for_watches(1)   # its watch is open
        kube.drop_watches()        # now broken mid-stream; it must re-list or re-watch
        kube.wait_for_watches(1)   # ...and it did
        kube.restart()             # same port and objects, empty watch history (410 for old rvs)

Controls: ``compact``, ``expire_watches``, ``drop_watches``, ``stall_watches`` /
``release_watches``, ``fail_requests`` / ``clear_faults``, ``requests`` / ``reset_requests``,
``open_watches`` / ``wait_for_watches``, ``advance_clock``, ``stop`` / ``kill`` / ``restart``. See ``process.FakeKube``
for each, and the module docstrings (watch, crud, objects, schema, lists) for what is faithful and
what is simplified.
"""

from .process import TOKEN, FakeKube, FakeKubeError, LoggedRequest

__all__ = ["TOKEN", "FakeKube", "FakeKubeError", "LoggedRequest"]
