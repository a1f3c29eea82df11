"""A protocol-faithful fake Kubernetes API server, run in its own process, for controller tests.

No real kube-apiserver can run where these tests run, and a fake that is monkeypatched into the
client proves nothing about the wire. This one serves real HTTP to the real ``kubernetes`` client:
AuthPolicy (from the CRD in deploy/crds, with its status subresource and schema), Lease and Event;
lists with resourceVersion and paging; chunked watch streams with bookmarks and 410 Expired; and a
control API to break things the way clusters do. Usage::

    from tests.support.fakekube import FakeKube

    @pytest.fixture
    def kube(tmp_path: Path) -> Iterator[FakeKube]:
        with FakeKube.start(tmp_path, bookmark_interval=0.2) as kube:
            yield kube

    def test_something(kube: FakeKube) -> None:
        api = kubernetes.client.CustomObjectsApi(kube.api_client())
        # or: kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path))
        kube.wait_for_watches(1)  # the controller's watch is open
        kube.drop_watches()       # ...and now it is broken mid-stream
        kube.restart()            # same port and objects, empty watch history

See ``process.FakeKube`` for every control, and the module docstrings for what is faithful and
what is simplified.
"""

from .process import TOKEN, FakeKube, FakeKubeError, LoggedRequest

__all__ = ["TOKEN", "FakeKube", "FakeKubeError", "LoggedRequest"]
