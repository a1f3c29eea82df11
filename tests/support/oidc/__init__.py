"""A real OAuth 2.0 authorization server for tests: npm `oidc-provider`, run as its own process.

The node side (`server.mjs`, pinned in `package-lock.json`) is configured per start from a JSON
file this module writes: port, signing keys, clients and resource servers. The Python side starts
it on a free port, reads its endpoints from discovery, and talks to it as an OAuth client would:

    with OidcProvider.start(tmp_path) as op:
        jwt_token = op.client_credentials_token(scope="orders:read", resource=JWT_RESOURCE)
        opaque = op.client_credentials_token(scope="orders:read", resource=OPAQUE_RESOURCE)
        assert op.introspect(opaque.access_token)["active"]
        bound = op.dpop_token(DpopKey.generate())    # cnf.jkt
        op.restart(keys=[rsa_key("op-rsa-2")])       # same issuer, rotated signing keys

Tokens survive `restart()` (the provider saves them on SIGTERM), like a real server's database.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import tiers
from tests.support.keys import SigningKey, rsa_key
from tests.support.oidc.config import (
    AUDIENCE,
    CLIENT_CERT_HEADER,
    DEFAULT_RESOURCES,
    DPOP_CLIENT,
    GATEWAY,
    JWT_RESOURCE,
    MTLS_CLIENT,
    OPAQUE_RESOURCE,
    SCOPES,
    Client,
    Resource,
    provider_config,
)
from tests.support.oidc.proofs import ClientCertificate, DpopKey
from tests.support.procs import Proc, free_port

__all__ = [
    "AUDIENCE",
    "DPOP_CLIENT",
    "GATEWAY",
    "JWT_RESOURCE",
    "MTLS_CLIENT",
    "OPAQUE_RESOURCE",
    "SCOPES",
    "Client",
    "ClientCertificate",
    "DpopKey",
    "OidcError",
    "OidcProvider",
    "Resource",
    "Token",
    "check_installed",
]

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.mjs"


@dataclass(frozen=True)
class Token:
    """A token endpoint answer."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str | None
    raw: dict[str, Any] = field(repr=False)


class OidcError(Exception):
    """A non-2xx answer from the provider, with its OAuth error code."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        self.error: str | None = doc.get("error") if isinstance(doc, dict) else None
        self.description: str | None = (
            doc.get("error_description") if isinstance(doc, dict) else None
        )
        super().__init__(f"HTTP {status}: {self.error}: {self.description}")


def check_installed(folder: Path = HERE) -> str:
    """The node binary, or a RuntimeError saying how to install what is missing (never a skip)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "node is not on PATH: the OAuth tests need Node.js 20+ (apt-get install nodejs)"
        )
    if not (folder / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"{folder / 'node_modules'} is missing: run `make test`, "
            "or `npm ci --prefix tests/support/oidc`, to install oidc-provider"
        )
    return node


class OidcProvider:
    """One oidc-provider process and an OAuth client of it."""

    def __init__(
        self,
        workdir: Path,
        *,
        keys: Sequence[SigningKey],
        clients: Sequence[Client],
        resources: dict[str, Resource],
        dpop_nonce: bool,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = tuple(keys)
        self.clients = {c.client_id: c for c in clients}
        self.resources = dict(resources)
        self.dpop_nonce = dpop_nonce
        self.store_file = workdir / "oidc-provider-store.json"
        self.discovery: dict[str, Any] = {}
        self.proc: Proc | None = None
        self._starts = 0

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        keys: Sequence[SigningKey] | None = None,
        clients: Sequence[Client] = (GATEWAY, DPOP_CLIENT, MTLS_CLIENT),
        resources: dict[str, Resource] | None = None,
        dpop_nonce: bool = False,
    ) -> OidcProvider:
        """Start a provider whose files and log live in `workdir` (e.g. the test's tmp_path)."""
        provider = cls(
            workdir,
            keys=keys if keys is not None else [rsa_key("op-rsa-1")],
            clients=clients,
            resources=DEFAULT_RESOURCES if resources is None else resources,
            dpop_nonce=dpop_nonce,
        )
        provider._launch()
        return provider

    def _launch(self) -> None:
        tiers.starting("oidc-provider")
        node = check_installed()
        self._starts += 1
        config = self.workdir / "oidc-provider.json"
        config.write_text(
            json.dumps(
                provider_config(
                    port=self.port,
                    keys=self.keys,
                    clients=list(self.clients.values()),
                    resources=self.resources,
                    dpop_nonce=self.dpop_nonce,
                    store_file=self.store_file,
                )
            )
        )
        self.proc = Proc(
            "oidc-provider",
            [node, str(SERVER), str(config)],
            log=self.workdir / f"oidc-provider-{self._starts}.log",
        )
        self.proc.wait_http(f"{self.issuer}/.well-known/openid-configuration")
        with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration") as answer:
            self.discovery = json.load(answer)

    # -- endpoints, from discovery ------------------------------------------------------------

    @property
    def jwks_uri(self) -> str:
        return str(self.discovery["jwks_uri"])

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery["token_endpoint"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.discovery["introspection_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.discovery["revocation_endpoint"])

    # -- the OAuth client ---------------------------------------------------------------------

    def _post(
        self,
        url: str,
        form: dict[str, str],
        *,
        client: Client,
        headers: dict[str, str] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        basic = base64.b64encode(
            f"{urllib.parse.quote(client.client_id)}:{urllib.parse.quote(client.secret)}".encode()
        ).decode()
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Authorization": f"Basic {basic}", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.read(), {k.lower(): v for k, v in answer.headers.items()}
        except urllib.error.HTTPError as err:
            raise OidcError(
                err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}
            ) from None

    def request_token(
        self,
        client: Client = GATEWAY,
        *,
        scope: str | None = "orders:read",
        resource: str | None = OPAQUE_RESOURCE,
        headers: dict[str, str] | None = None,
    ) -> Token:
        """A client-credentials token request with extra headers (e.g. a hand-made DPoP proof)."""
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        if resource is not None:
            form["resource"] = resource
        body, _ = self._post(self.token_endpoint, form, client=client, headers=headers)
        doc = json.loads(body)
        return Token(
            doc["access_token"], doc["token_type"], doc["expires_in"], doc.get("scope"), doc
        )

    def client_credentials_token(
        self,
        client: Client = GATEWAY,
        *,
        scope: str | None = "orders:read",
        resource: str | None = OPAQUE_RESOURCE,
    ) -> Token:
        """A bearer token by the client-credentials grant; its format is the resource's."""
        return self.request_token(client, scope=scope, resource=resource)

    def dpop_token(
        self,
        key: DpopKey,
        client: Client = GATEWAY,
        *,
        scope: str | None = "orders:read",
        resource: str | None = JWT_RESOURCE,
    ) -> Token:
        """A token bound to `key` (cnf.jkt); answers the provider's nonce challenge if it sends one."""
        proof = key.proof("POST", self.token_endpoint)
        try:
            return self.request_token(
                client, scope=scope, resource=resource, headers={"DPoP": proof}
            )
        except OidcError as err:
            nonce = err.headers.get("dpop-nonce")
            if err.error != "use_dpop_nonce" or nonce is None:
                raise
        proof = key.proof("POST", self.token_endpoint, nonce=nonce)
        return self.request_token(client, scope=scope, resource=resource, headers={"DPoP": proof})

    def mtls_token(
        self,
        cert: ClientCertificate,
        client: Client = MTLS_CLIENT,
        *,
        scope: str | None = "orders:read",
        resource: str | None = JWT_RESOURCE,
    ) -> Token:
        """A token bound to `cert` (cnf["x5t#S256"]), the certificate sent as a TLS proxy would."""
        return self.request_token(
            client, scope=scope, resource=resource, headers={CLIENT_CERT_HEADER: cert.url_encoded}
        )

    def introspect(
        self, token: str, *, client: Client = GATEWAY, token_type_hint: str | None = None
    ) -> dict[str, Any]:
        """RFC 7662 introspection of an opaque token (the provider refuses JWTs: 400)."""
        form = {"token": token}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        body, _ = self._post(self.introspection_endpoint, form, client=client)
        answer: dict[str, Any] = json.loads(body)
        return answer

    def revoke(self, token: str, *, client: Client = GATEWAY) -> None:
        """RFC 7009 revocation by the client the token was issued to."""
        self._post(self.revocation_endpoint, {"token": token}, client=client)

    def jwks(self) -> dict[str, Any]:
        """The public keys the provider serves now."""
        with urllib.request.urlopen(self.jwks_uri, timeout=10) as answer:
            doc: dict[str, Any] = json.load(answer)
            return doc

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful stop (SIGTERM): the provider saves its tokens for the next start."""
        if self.proc is not None:
            code = self.proc.terminate()
            proc, self.proc = self.proc, None
            if code != 0:
                proc.fail(f"exited with code {code} when stopped")

    def restart(
        self, *, keys: Sequence[SigningKey] | None = None, keep_tokens: bool = True
    ) -> None:
        """Stop, then start again with the same issuer (port); `keys` rotates the signing keys."""
        self.stop()
        if keys is not None:
            self.keys = tuple(keys)
        if not keep_tokens:
            self.store_file.unlink(missing_ok=True)
        self._launch()

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
