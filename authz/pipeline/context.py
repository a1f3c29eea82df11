"""One check on its way through the steps: what was asked, and what the steps found so far.

A Context is made once per check, as soon as the host has picked a policy, and handed to every
step in order. Its slots are the whole contract between the steps - a step reads what earlier
steps wrote and writes what later ones need - so nothing travels implicitly, and a new step can
see at a glance what it may use. It is a plain class with __slots__ because one is built per
check: no per-instance dict, no dataclass machinery, and `path` and `rule` stay unset until
their steps set them.

Given when the check starts (read-only for the steps): `request`, `policy`, `verifier`,
`limiter`, `now`, `consume` (False when explaining: rate limits are read, not counted, and
failures are not counted towards brute-force blocks), `trusted_proxy_hops`, `trace`, `blocks`
(the brute-force block store; None: no blocking).

Written by the steps, each readable from the step that writes it onwards:

    path              path step      the normalized path (unset before)
    rule              rule step      the rule that matched (unset before; see rule_name)
    params            rule step      path parameters its "{name}" segments captured (else empty)
    token             token step     the verified token, None when anonymous
    scheme            token step     its Authorization scheme, "bearer" or "dpop" ("" when anonymous)
    claims            token step     its claims, empty when anonymous
    subject           token step     its `sub` when a string: denials after it name it
    response_headers  ratelimit step headers for the client on an allow (RateLimit-*)
    address()         on first use   the client's address (see pipeline.address)

A step that finds something new for later steps adds its slot here, next to these: the path
parameters a `{tenant}` segment captures (written by the rule step, read by conditions), an
introspection result (token step).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from authz.jwt.verify import VerifiedToken, Verifier
from authz.pipeline.address import client_address
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Tracer
from authz.policy.model import CompiledPolicy, Rule
from authz.policy.traffic import IPAddress
from authz.ratelimit.blocks import BlockStore
from authz.ratelimit.limiter import Limiter

NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})
NO_PARAMS: Mapping[str, str] = MappingProxyType({})


class Context:
    __slots__ = (
        "_address",
        "_address_known",
        "blocks",
        "claims",
        "consume",
        "limiter",
        "now",
        "params",
        "path",
        "policy",
        "request",
        "response_headers",
        "rule",
        "scheme",
        "subject",
        "token",
        "trace",
        "trusted_proxy_hops",
        "verifier",
    )

    path: str
    rule: Rule

    # Positional: built once per check, in one place (decide), where keywords cost more than the
    # rest of the construction.
    def __init__(
        self,
        request: CheckInput,
        policy: CompiledPolicy,
        verifier: Verifier,
        limiter: Limiter | None,
        now: float,
        consume: bool,
        trusted_proxy_hops: int,
        trace: Tracer,
        blocks: BlockStore | None = None,
        /,
    ) -> None:
        self.request = request
        self.policy = policy
        self.verifier = verifier
        self.limiter = limiter
        self.now = now
        self.consume = consume
        self.trusted_proxy_hops = trusted_proxy_hops
        self.trace = trace
        self.blocks = blocks
        self.token: VerifiedToken | None = None
        self.scheme = ""
        self.claims = NO_CLAIMS
        self.params = NO_PARAMS
        self.subject: str | None = None
        self.response_headers: tuple[tuple[str, str], ...] = ()
        self._address: IPAddress | None = None
        self._address_known = False

    def address(self) -> IPAddress | None:
        """The client's address, or None when it cannot be determined (worked out once)."""
        if not self._address_known:
            self._address = client_address(self.request, trusted_proxy_hops=self.trusted_proxy_hops)
            self._address_known = True
        return self._address

    def rule_name(self) -> str | None:
        """The matched rule's name; None while no rule has matched (a denial says where)."""
        try:
            return self.rule.name
        except AttributeError:
            return None


#: What a step returns: a decision ends the check; None passes it on. A step that has to wait
#: (for a signature check, a rate-limit backend) returns an awaitable of the same; the others
#: stay plain functions, so a check does not pay for a coroutine per step.
StepResult = Decision | Awaitable[Decision | None] | None
Step = Callable[[Context], StepResult]
#: Runs on every decision a step made, in order, and may replace it (the policy's mode).
Finish = Callable[[Context, Decision], Decision | Awaitable[Decision]]
