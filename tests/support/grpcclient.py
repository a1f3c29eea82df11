"""Call the sidecar's Check directly over gRPC, as Envoy would, with our own message types."""

from __future__ import annotations

import grpc

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb

CHECK = "/envoy.service.auth.v3.Authorization/Check"
#: The request headers of a gRPC Check call, for tests that write HTTP/2 frames themselves.
CHECK_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", CHECK),
    (":authority", "authz"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def check_request(
    *,
    host: str,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    source_ip: str = "10.0.0.1",
) -> pb.CheckRequest:
    request = pb.CheckRequest()
    http = request.attributes.request.http
    http.host, http.path, http.method = host, path, method
    http.headers.update({":authority": host, ":path": path, ":method": method, **(headers or {})})
    request.attributes.source.address.socket_address.address = source_ip
    return request


class CheckClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self._call = self.channel.unary_unary(
            CHECK,
            request_serializer=pb.CheckRequest.SerializeToString,
            response_deserializer=pb.CheckResponse.FromString,
        )

    def check(self, request: pb.CheckRequest, timeout: float = 10.0) -> pb.CheckResponse:
        response: pb.CheckResponse = self._call(request, timeout=timeout)
        return response

    def close(self) -> None:
        self.channel.close()
