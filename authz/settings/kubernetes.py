"""The Kubernetes policy source's settings: what to watch, and the leader Lease."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from authz.errors import ConfigError
from authz.settings.declare import Section, flag_of, option
from authz.settings.kinds import Amount, ExistingFile, Names, OptionalText, Switch


@dataclass(frozen=True, slots=True)
class KubernetesSettings(Section):
    """Kubernetes: AuthPolicy resources, their status, the leader Lease."""

    enabled: bool = option(
        False,
        Switch(),
        flag="--kubernetes",
        help="also serve AuthPolicy resources from the Kubernetes API, watched live (the leader "
        "replica writes their status); combinable with `--policies`",
        doc="(see [Kubernetes](#kubernetes))",
    )
    kubeconfig: Path | None = option(
        None,
        ExistingFile(),
        flag="--kubeconfig",
        metavar="PATH",
        shown="in-cluster config, then `KUBECONFIG` (or `~/.kube/config`)",
        help="how `--kubernetes` reaches the API server",
    )
    namespaces: tuple[str, ...] = option(
        (),
        Names(),
        flag="--namespace",
        metavar="NS",
        shown="all namespaces",
        help="watch AuthPolicies in this namespace only; repeatable",
    )
    selector: str | None = option(
        None,
        OptionalText(),
        flag="--selector",
        metavar="LABEL_SELECTOR",
        help="serve only AuthPolicies whose labels match, e.g. `shard=eu` (shards policies "
        "across sidecar fleets)",
    )
    lease_name: str | None = option(
        None,
        OptionalText(),
        flag="--lease-name",
        metavar="NAME",
        shown="`authz-leader` (+ a hash of `--namespace`/`--selector` when set, so shards "
        "elect separately)",
        help="the leader-election Lease in `POD_NAMESPACE`",
    )
    lease_duration: float = option(
        15.0,
        Amount(1, 3600, noun="seconds"),
        flag="--lease-duration",
        metavar="SECONDS",
        help="a status-writing leader that has not renewed for this long is replaced",
    )
    identity: str | None = option(
        None,
        OptionalText(),
        env="POD_NAME",
        help="this replica's identity in the leader Lease; unset: hostname and process id",
    )
    lease_namespace: str | None = option(
        None,
        OptionalText(),
        env="POD_NAMESPACE",
        help="the Lease's namespace; unset: the in-cluster or kubeconfig namespace",
    )
    #: A changed resource waits this long (seconds) for more changes before a snapshot is built.
    coalesce_quiet: float = 0.1
    #: ...but never longer than this (seconds) after the first change of a burst.
    coalesce_max: float = 1.0
    #: A watch that delivers nothing, not even a bookmark, for this long (seconds) is restarted.
    stall_timeout: float = 90.0
    #: The server ends each watch after about this long (seconds; timeoutSeconds, jittered).
    watch_timeout: float = 300.0
    #: Reconnect backoff after a failure: first delay and cap (seconds), with jitter.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def validate(self) -> None:
        if self.enabled:
            return
        for name in ("kubeconfig", "namespaces", "selector", "lease_name"):
            if getattr(self, name):
                raise ConfigError(f"{flag_of(KubernetesSettings, name)} needs --kubernetes")
