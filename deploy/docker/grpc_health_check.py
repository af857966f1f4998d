"""Exits 0 when the local gRPC server reports SERVING, else 1.

Used by the images' HEALTHCHECK and by Kubernetes exec probes where TLS is on (native gRPC
probes cannot speak TLS). It follows the server's own settings:

- address: SEGUE_GRPC_HOST, or 127.0.0.1 when the server binds every interface (0.0.0.0, ::);
- TLS, when SEGUE_TLS_CERT is set: the server's certificate is verified against SEGUE_TLS_CA
  (else the server's own certificate is trusted as the root, for a self-signed one), for the
  name given by --server-name, else SEGUE_TLS_SERVER_NAME, else "localhost";
- mutual TLS: SEGUE_TLS_CLIENT_CERT and SEGUE_TLS_CLIENT_KEY are presented when both are set;
  otherwise, when the server demands client certificates (SEGUE_TLS_CLIENT_CA), the server's
  own certificate and key are (so that certificate must be valid for client auth);
- authentication: unless SEGUE_OPEN_HEALTH is on, the bearer token in SEGUE_TOKEN, or in the
  file SEGUE_TOKEN_FILE, is sent as `authorization: Bearer <token>`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
TRUE = frozenset({"1", "true", "yes", "on"})


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def target(port: int) -> str:
    """The local address to dial: the server's bind address unless it binds everything."""
    host = _env("SEGUE_GRPC_HOST")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def bearer_token() -> str:
    """The token to send, or "" when health is open or no token is configured."""
    if _env("SEGUE_OPEN_HEALTH").lower() in TRUE:
        return ""
    token = _env("SEGUE_TOKEN")
    if not token and _env("SEGUE_TOKEN_FILE"):
        token = Path(_env("SEGUE_TOKEN_FILE")).read_text(encoding="utf-8").strip()
    return token


def _client_identity() -> tuple[bytes | None, bytes | None]:
    cert, key = _env("SEGUE_TLS_CLIENT_CERT"), _env("SEGUE_TLS_CLIENT_KEY")
    if not (cert and key) and _env("SEGUE_TLS_CLIENT_CA"):
        cert, key = _env("SEGUE_TLS_CERT"), _env("SEGUE_TLS_KEY")
    if cert and key:
        return Path(key).read_bytes(), Path(cert).read_bytes()
    return None, None


def channel(port: int, server_name: str | None = None) -> grpc.Channel:
    address = target(port)
    cert_path = _env("SEGUE_TLS_CERT")
    if not cert_path:
        return grpc.insecure_channel(address)
    roots = Path(_env("SEGUE_TLS_CA") or cert_path).read_bytes()
    private_key, certificate_chain = _client_identity()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=private_key, certificate_chain=certificate_chain
    )
    name = server_name or _env("SEGUE_TLS_SERVER_NAME") or "localhost"
    return grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", name)]
    )


def check(port: int, service: str, timeout_s: float, server_name: str | None = None) -> bool:
    try:
        token = bearer_token()
        ch = channel(port, server_name)
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return False
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout_s,
                metadata=metadata,
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}", file=sys.stderr)
            return False
    serving: bool = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(f"unhealthy: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return serving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health check of a local Segue service")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SEGUE_GRPC_PORT", "0")))
    parser.add_argument("--service", default="", help="health service name; '' = whole server")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument(
        "--server-name",
        default=None,
        help="name expected in the server's certificate (default: SEGUE_TLS_SERVER_NAME)",
    )
    args = parser.parse_args(argv)
    if args.port <= 0:
        parser.error("--port or SEGUE_GRPC_PORT is required")
    return 0 if check(args.port, args.service, args.timeout, args.server_name) else 1


if __name__ == "__main__":
    raise SystemExit(main())
