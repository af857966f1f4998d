"""Configuration from environment variables, with documented defaults.

Every setting is read once at start-up into a frozen dataclass, so a service's behaviour
cannot change under it while it runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from segue.log import mask_secrets

T = TypeVar("T")


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from e


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as e:
        raise ValueError(f"{name} must be a number, got {raw!r}") from e


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean, got {raw!r}")


@dataclass(frozen=True)
class ServerConfig:
    """Settings every Segue service shares.

    Environment:
        SEGUE_GRPC_HOST: interface the gRPC and metrics servers bind (default "127.0.0.1":
            loopback only; a container sets "0.0.0.0").
        SEGUE_GRPC_PORT: gRPC port (per-service default).
        SEGUE_METRICS_PORT: Prometheus /metrics HTTP port (per-service default; 0 disables).
        SEGUE_LOG_LEVEL: debug, info, warning or error (default info).
        SEGUE_LOG_FORMAT: json or console (default json).
        SEGUE_MAX_MESSAGE_BYTES: largest gRPC message accepted (default 4 MiB).
        SEGUE_SHUTDOWN_GRACE_S: seconds in-flight calls get to finish on SIGTERM (default 20).
        SEGUE_TLS_CERT / SEGUE_TLS_KEY: PEM files; TLS is on when both are set (setting only
            one is an error, never a silent fall-back to plaintext).
        SEGUE_TLS_CLIENT_CA: PEM bundle; when set, clients must present a certificate it
            signed (mutual TLS).
        SEGUE_AUTH_TOKENS_FILE: the bearer tokens and their scopes (see segue/security/
            tokens.py); re-read when it changes, so tokens rotate without a restart.
        SEGUE_OPEN_HEALTH: serve grpc.health.v1 without a token (default false; the
            Kubernetes manifests set it for the kubelet's probes).
        SEGUE_OPEN_REFLECTION: serve reflection without a token (default false).
        SEGUE_MAX_STREAMS_PER_CLIENT: streaming calls one client (token, or peer address
            without auth) may hold open at once (default 64).
        SEGUE_INSECURE_DEV: "1" allows running without SEGUE_AUTH_TOKENS_FILE (every call
            is then allowed) and with development keys, with a warning; for local
            development, the demo and the tests only.
    """

    service: str
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    metrics_port: int = 9101
    log_level: str = "info"
    log_format: str = "json"
    max_message_bytes: int = 4 * 1024 * 1024
    shutdown_grace_s: float = 20.0
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth_tokens_file: str = ""
    open_health: bool = False
    open_reflection: bool = False
    max_streams_per_client: int = 64
    insecure_dev: bool = False

    @classmethod
    def from_env(cls, service: str, grpc_port: int, metrics_port: int) -> ServerConfig:
        return cls(
            service=service,
            host=env_str("SEGUE_GRPC_HOST", "127.0.0.1"),
            grpc_port=env_int("SEGUE_GRPC_PORT", grpc_port),
            metrics_port=env_int("SEGUE_METRICS_PORT", metrics_port),
            log_level=env_str("SEGUE_LOG_LEVEL", "info"),
            log_format=env_str("SEGUE_LOG_FORMAT", "json"),
            max_message_bytes=env_int("SEGUE_MAX_MESSAGE_BYTES", 4 * 1024 * 1024),
            shutdown_grace_s=env_float("SEGUE_SHUTDOWN_GRACE_S", 20.0),
            tls_cert=env_str("SEGUE_TLS_CERT", ""),
            tls_key=env_str("SEGUE_TLS_KEY", ""),
            tls_client_ca=env_str("SEGUE_TLS_CLIENT_CA", ""),
            auth_tokens_file=env_str("SEGUE_AUTH_TOKENS_FILE", ""),
            open_health=env_bool("SEGUE_OPEN_HEALTH", False),
            open_reflection=env_bool("SEGUE_OPEN_REFLECTION", False),
            max_streams_per_client=env_int("SEGUE_MAX_STREAMS_PER_CLIENT", 64),
            insecure_dev=insecure_dev_from_env(),
        )


def insecure_dev_from_env() -> bool:
    """Whether SEGUE_INSECURE_DEV=1 allows development shortcuts (no auth, development keys)."""
    return env_bool("SEGUE_INSECURE_DEV", False)


def describe(config: Any) -> dict[str, Any]:
    """A dataclass config as a dict for the start-up log line, secrets masked."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        secret = any(word in f.name for word in ("key", "token", "secret", "password"))
        if secret and value and not f.name.endswith(("_file", "_path")):
            value = "***"
        elif isinstance(value, str):
            value = mask_secrets(value)
        out[f.name] = value
    return out


def mask_url(url: str) -> str:
    """`url` with its credentials (user:password@, api_key=...) replaced by ***."""
    return mask_secrets(url)


__all__ = [
    "ServerConfig", "describe", "env_bool", "env_float", "env_int", "env_str", "field",
    "insecure_dev_from_env", "mask_url",
]
