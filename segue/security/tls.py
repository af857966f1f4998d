"""Server TLS credentials from PEM files: TLS, or mutual TLS when a client CA is given."""

from __future__ import annotations

from pathlib import Path

import grpc


class TlsConfigError(ValueError):
    """The TLS settings are incomplete or their files unreadable (never a silent plaintext)."""


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TlsConfigError(f"{name}: cannot read {path}: {e.strerror}") from None


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials | None:
    """Credentials for `add_secure_port`, or None for plaintext when nothing is set.

    Setting only one of cert and key, or a client CA without them, is an error: an operator who
    set one asked for TLS and must not be served plaintext.
    """
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise TlsConfigError("SEGUE_TLS_CERT and SEGUE_TLS_KEY must be set together"
                             + (" (SEGUE_TLS_CLIENT_CA needs both)" if client_ca else ""))
    pair = (_read("SEGUE_TLS_KEY", key), _read("SEGUE_TLS_CERT", cert))
    if not client_ca:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_read("SEGUE_TLS_CLIENT_CA", client_ca),
        require_client_auth=True,
    )
