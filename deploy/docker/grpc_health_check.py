"""Exits 0 when the gRPC server on localhost reports SERVING, else 1.

Used by the images' HEALTHCHECK and by Kubernetes exec probes where TLS is on (native gRPC
probes cannot speak TLS). TLS follows the server's own settings: when SEGUE_TLS_CERT is set,
the server's certificate is trusted as the root and SEGUE_TLS_SERVER_NAME (a name in it)
is the name checked.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def channel(port: int) -> grpc.Channel:
    target = f"127.0.0.1:{port}"
    cert_path = os.environ.get("SEGUE_TLS_CERT", "")
    if not cert_path:
        return grpc.insecure_channel(target)
    with open(cert_path, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    server_name = os.environ.get("SEGUE_TLS_SERVER_NAME", "localhost")
    return grpc.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", server_name)]
    )


def check(port: int, service: str, timeout_s: float) -> bool:
    with channel(port) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
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
    args = parser.parse_args(argv)
    if args.port <= 0:
        parser.error("--port or SEGUE_GRPC_PORT is required")
    return 0 if check(args.port, args.service, args.timeout) else 1


if __name__ == "__main__":
    raise SystemExit(main())
