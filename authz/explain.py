"""`authz explain`: ask a running sidecar why a request would be allowed or denied.

    authz explain [--admin ADDR] [-H 'authorization: Bearer ...'] METHOD URL

It calls authz.v1.Admin/Explain on the sidecar's --admin-listen address and prints each step
of the decision as a table with a mark per step, then the decision and the header rewrites.
The exit code is the answer: 0 allowed (also a dryRun policy's allow), 1 denied, 2 when the
request cannot be explained (bad arguments, admin API unreachable). The token passed with -H
goes to the sidecar only and is never printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO
from urllib.parse import urlsplit

import grpc
from google.protobuf.json_format import MessageToJson

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.adminclient import add_admin_argument, call
from authz.errors import ConfigError

EXPLAIN = "/authz.v1.Admin/Explain"
EXIT_ALLOWED, EXIT_DENIED = 0, 1

_MARKS: dict[int, str] = {apb.PASS: "✔", apb.FAIL: "✘", apb.SKIP: "○", apb.INFO: "·"}
_ASCII_MARKS: dict[int, str] = {apb.PASS: "+", apb.FAIL: "x", apb.SKIP: "-", apb.INFO: "."}
_OUTCOME_NAMES: dict[int, str] = {
    apb.PASS: "pass",
    apb.FAIL: "FAIL",
    apb.SKIP: "skip",
    apb.INFO: "info",
}


def add_explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain",
        help="ask a running sidecar why a request would be allowed or denied",
        description="Explain the decision for a request without sending it: the policy and rule "
        "chosen, every step with its outcome, the header rewrites. Exit 0 allowed, 1 denied, "
        "2 error. Rate limits are evaluated without consuming quota.",
    )
    add_admin_argument(parser)
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header, as with curl (repeatable), e.g. -H 'authorization: Bearer ...'",
    )
    parser.add_argument("--source-ip", default="", metavar="IP", help="the client's IP address")
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="call the admin API over TLS, checking its certificate against this PEM CA bundle "
        "(`authz serve --tls-cert` with an --admin-listen other than loopback)",
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="client certificate (PEM) for mutual TLS, with --tls-key"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the client certificate's PEM key")
    parser.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the admin API's certificate must carry (default: the host of --admin)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    parser.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    parser.add_argument("url", metavar="URL", help="e.g. https://orders.example.com/orders/42")


def build_request(
    method: str, url: str, headers: list[str], *, source_ip: str = ""
) -> apb.ExplainRequest:
    """The Explain request for a curl-like command line."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.netloc:
        raise ConfigError(f"URL: expected e.g. https://host/path, got {url!r}")
    request = apb.ExplainRequest(
        method=method.upper(),
        host=parts.netloc.rpartition("@")[2],
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        source_ip=source_ip,
    )
    for raw in headers:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise ConfigError("-H: expected 'NAME: VALUE' (e.g. -H 'authorization: Bearer ...')")
        name = name.strip().lower()
        if name in ("host", ":authority"):
            request.host = value.strip()
        else:
            request.headers[name] = value.strip()
    return request


def _marks(out: TextIO) -> dict[int, str]:
    try:
        "".join(_MARKS.values()).encode(out.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return _ASCII_MARKS
    return _MARKS


def render(request: apb.ExplainRequest, answer: apb.ExplainResponse, out: TextIO) -> None:
    """Print the explanation as a table with a mark per step."""
    marks = _marks(out)
    write = out.write
    write(f"{request.method} {request.host}{request.path.partition('?')[0]}\n")
    write(f"policy: {answer.policy or '(none)'}    rule: {answer.rule or '(none)'}")
    write(f"    snapshot: {answer.snapshot_serial}\n\n")
    width = max([len("STEP"), *(len(s.name) for s in answer.steps)])
    write(f"   {'STEP':<{width}}  RESULT  DETAIL\n")
    for step in answer.steps:
        mark = marks.get(step.outcome, "?")
        outcome = _OUTCOME_NAMES.get(step.outcome, "?")
        write(f"{mark}  {step.name:<{width}}  {outcome:<6}  {step.detail}\n")
    write("\n")
    verdict = "ALLOW" if answer.allowed else f"DENY {answer.http_status} {answer.reason}"
    if answer.dry_run:
        write(f"ALLOW (dryRun policy; would be: {verdict})")
    else:
        write(verdict)
    if not answer.allowed and answer.description:
        write(f": {answer.description}")
    write("\n")
    if answer.subject:
        write(f"  subject          {answer.subject}\n")
    for header in answer.set_headers:
        write(f"  set header       {header.name}: {header.value}\n")
    for name in answer.remove_headers:
        write(f"  remove header    {name}\n")
    if not answer.dry_run:
        for header in answer.response_headers:
            write(f"  response header  {header.name}: {header.value}\n")


def _read(path: str | None, *, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def channel_for(admin: str, args: argparse.Namespace) -> grpc.Channel:
    """A channel to the admin API: plaintext, or TLS (and mutual TLS) when --tls-ca is given."""
    ca = _read(getattr(args, "tls_ca", None), flag="--tls-ca")
    cert = _read(getattr(args, "tls_cert", None), flag="--tls-cert")
    key = _read(getattr(args, "tls_key", None), flag="--tls-key")
    if ca is None:
        if cert is not None or key is not None:
            raise ConfigError("--tls-cert and --tls-key need --tls-ca (the admin API's CA)")
        return grpc.insecure_channel(admin)
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    name = getattr(args, "tls_server_name", None)
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(admin, credentials, options=options)


def run_explain(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    request = build_request(args.method, args.url, args.header, source_ip=args.source_ip)
    answer = call(
        args, EXPLAIN, request, apb.ExplainResponse, channel=channel_for(args.admin, args)
    )
    if args.json:
        out.write(MessageToJson(answer, preserving_proto_field_name=True) + "\n")
    else:
        render(request, answer, out)
    return EXIT_ALLOWED if answer.allowed or answer.dry_run else EXIT_DENIED
