"""How a client proves who it is: a bearer token on every call, and TLS or mutual TLS.

By default both come from the environment, so the SDK, the CLI and a service calling another
service (the mixer calls the matcher) are configured the same way:

    SEGUE_TOKEN: the bearer token, or SEGUE_TOKEN_FILE: a file holding it (e.g. a mounted
        Secret; re-read for each new client, so a rotated token is picked up).
    SEGUE_TLS_CA: PEM bundle of the CA that signed the servers' certificates; TLS is on when
        it is set.
    SEGUE_TLS_CLIENT_CERT / SEGUE_TLS_CLIENT_KEY: this client's certificate, for servers that
        require mutual TLS.
    SEGUE_TLS_SERVER_NAME: the name the server's certificate must carry, when the address does
        not (e.g. an IP address).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio


class ClientConfigError(ValueError):
    """A token or TLS setting is incomplete or its file unreadable."""


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ClientConfigError(f"{name}: cannot read {path}: {e.strerror}") from None


def token_from_env() -> str | None:
    """SEGUE_TOKEN, else the contents of SEGUE_TOKEN_FILE (stripped), else None."""
    token = os.environ.get("SEGUE_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("SEGUE_TOKEN_FILE", "")
    if not path:
        return None
    token = _read("SEGUE_TOKEN_FILE", path).decode("utf-8", "replace").strip()
    if not token:
        raise ClientConfigError(f"SEGUE_TOKEN_FILE {path} is empty")
    return token


def tls_credentials(ca: str | None = None, cert: str | None = None,
                    key: str | None = None) -> grpc.ChannelCredentials:
    """TLS credentials: `ca` verifies the server (None: the system's roots); `cert` and `key`
    (PEM paths, both or neither) present this client for mutual TLS."""
    if bool(cert) != bool(key):
        raise ClientConfigError("a client certificate and its key must be given together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read("SEGUE_TLS_CA", ca) if ca else None,
        private_key=_read("SEGUE_TLS_CLIENT_KEY", key) if key else None,
        certificate_chain=_read("SEGUE_TLS_CLIENT_CERT", cert) if cert else None,
    )


def tls_from_env() -> grpc.ChannelCredentials | None:
    """TLS credentials from SEGUE_TLS_CA and SEGUE_TLS_CLIENT_CERT/KEY, or None for plaintext."""
    ca = os.environ.get("SEGUE_TLS_CA", "")
    cert = os.environ.get("SEGUE_TLS_CLIENT_CERT", "")
    key = os.environ.get("SEGUE_TLS_CLIENT_KEY", "")
    if not (ca or cert or key):
        return None
    if not ca:
        raise ClientConfigError("SEGUE_TLS_CLIENT_CERT/KEY need SEGUE_TLS_CA (the servers' CA)")
    return tls_credentials(ca, cert or None, key or None)


if TYPE_CHECKING:  # the stubs make these generic; at run time they are plain classes
    _UU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _SU = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _SS = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    _UU = grpc.aio.UnaryUnaryClientInterceptor
    _US = grpc.aio.UnaryStreamClientInterceptor
    _SU = grpc.aio.StreamUnaryClientInterceptor
    _SS = grpc.aio.StreamStreamClientInterceptor


class _Bearer:
    """Adds `authorization: Bearer <token>` to a call's metadata."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self._header)
        return details._replace(metadata=metadata)


# One class per call kind: the channel files each interceptor under the first kind it is an
# instance of, so one class deriving from all four would only ever see unary-unary calls.
class _BearerUnaryUnary(_Bearer, _UU):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerUnaryStream(_Bearer, _US):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerStreamUnary(_Bearer, _SU):
    async def intercept_stream_unary(self, continuation: Any, details: Any,
                                     requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _BearerStreamStream(_Bearer, _SS):
    async def intercept_stream_stream(self, continuation: Any, details: Any,
                                      requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(token: str) -> list[Any]:
    """Client interceptors that send `token` on every kind of call."""
    kinds = (_BearerUnaryUnary, _BearerUnaryStream, _BearerStreamUnary, _BearerStreamStream)
    return [kind(token) for kind in kinds]


@dataclass(frozen=True)
class ClientSecurity:
    """A client's token and TLS credentials; `from_env()` reads the documented variables."""

    token: str | None = None
    tls: grpc.ChannelCredentials | None = None
    server_name: str | None = None

    @classmethod
    def from_env(cls) -> ClientSecurity:
        return cls(token=token_from_env(), tls=tls_from_env(),
                   server_name=os.environ.get("SEGUE_TLS_SERVER_NAME") or None)


def open_channel(address: str, security: ClientSecurity,
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An aio channel to `address` carrying `security`'s token, over TLS if it has credentials."""
    opts = list(options)
    if security.server_name:
        opts.append(("grpc.ssl_target_name_override", security.server_name))
    interceptors = bearer_interceptors(security.token) if security.token else None
    if security.tls is not None:
        return grpc.aio.secure_channel(address, security.tls, options=opts,
                                       interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=opts, interceptors=interceptors)
