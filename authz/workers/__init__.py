"""`authz serve --workers N`: N processes answer checks, one process feeds them policies.

The supervisor (the process `authz serve` starts) runs everything that must exist once per
pod: the policy sources (file polling; the Kubernetes watch, status writes and leader
election), the HTTP probes and /metrics, the admin API. It starts N worker processes, hands
each the complete documents of every source at start and every change after (authz.workers.pool),
and each worker compiles them into its own snapshot and answers checks on its own Unix socket
(authz.workers.worker). Envoy's gRPC client multiplexes one Envoy worker's checks over one
HTTP/2 connection, so one shared listening socket would leave all but one process idle; with a
socket each, Envoy balances across them as the endpoints of one cluster.
"""
