"""The Kubernetes policy source: AuthPolicy resources watched live, with status on each of them.

    api.py         the seam: the KubeApi Protocol and plain data types
    kube.py        the only module that imports the `kubernetes` client (implements KubeApi)
    stream.py      a watch response split into events; stall timeout, close from any thread
    watcher.py     list, then watch from the list's resourceVersion; 410 -> re-list; backoff
    documents.py   the objects every watch has seen -> SourceDocuments for the PolicyStore
    source.py      coalesce bursts, publish one snapshot per burst, readiness after the first list
    status.py      the Ready condition each resource should show, and writing it when it differs
    leader.py      a coordination.k8s.io/v1 Lease: exactly one replica writes status
    events.py      a Kubernetes Event on a resource when it becomes invalid or conflicted
    blockevents.py a Warning Event on a policy when a brute-force block starts (any replica)
    observer.py    what the controller reports (counters now; metrics and spans hook in here)

Every replica enforces every policy it watches; only the elected leader writes status and its
events (a brute-force block is reported by the replica that started it).
The kubernetes client is synchronous, so each watch runs in its own thread; compiling happens in
the PolicyStore off the event loop, and the check path only ever sees a finished snapshot.
"""
