"""Deciding whether a call may proceed: its bearer token, the token's scopes, the method's scope.

The decision is made from the call's metadata alone, before the handler runs or any request is
read; segue/interceptor.py acts on it. Refusals are counted by reason
(segue_auth_refusals_total); the token itself is never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from segue.security.scopes import HEALTH_PREFIX, METHOD_SCOPES, REFLECTION_PREFIXES
from segue.security.tokens import Principal, TokenFile

# The principal of every call when auth is off (SEGUE_INSECURE_DEV=1 without a token file).
ANONYMOUS = Principal("anonymous", frozenset({"*"}))
_BEARER = "bearer "
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Refusal:
    """Why a call is refused: its status code, a message for the client, a metric reason."""

    code: grpc.StatusCode
    message: str
    reason: str


def bearer_token(metadata: Sequence[Any] | None) -> str | None:
    """The token of the call's `authorization: Bearer <token>` header, "" if malformed."""
    for key, value in metadata or ():
        if key != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if text[: len(_BEARER)].lower() != _BEARER or len(text) > MAX_TOKEN_CHARS:
            return ""
        return text[len(_BEARER):].strip()
    return None


class Authenticator:
    """Checks calls against a token file; with no file (development only), allows everything.

    Health checks and reflection need a valid token of any scope unless `open_health` or
    `open_reflection` opens them to everyone.
    """

    def __init__(self, tokens: TokenFile | None, *, open_health: bool = False,
                 open_reflection: bool = False) -> None:
        self.tokens = tokens
        self._open_health = open_health
        self._open_reflection = open_reflection

    @property
    def enabled(self) -> bool:
        return self.tokens is not None

    def _is_open(self, method: str) -> bool:
        if method.startswith(HEALTH_PREFIX):
            return self._open_health
        return self._open_reflection and method.startswith(REFLECTION_PREFIXES)

    def check(self, method: str, metadata: Sequence[Any] | None) -> Principal | Refusal:
        """The caller, or why the call is refused."""
        if self.tokens is None or self._is_open(method):
            return ANONYMOUS
        token = bearer_token(metadata)
        if token is None:
            return Refusal(grpc.StatusCode.UNAUTHENTICATED,
                           "missing 'authorization: Bearer <token>' metadata", "missing_token")
        principal = self.tokens.lookup(token) if token else None
        if principal is None:
            reason = "unknown_token" if token else "malformed_token"
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token", reason)
        return self._authorise(method, principal)

    @staticmethod
    def _authorise(method: str, principal: Principal) -> Principal | Refusal:
        if method.startswith(HEALTH_PREFIX) or method.startswith(REFLECTION_PREFIXES):
            return principal  # any valid token may check health or list services
        scope = METHOD_SCOPES.get(method)
        if scope is None:
            return Refusal(grpc.StatusCode.PERMISSION_DENIED,
                           f"{method} is not open to any scope", "unknown_method")
        if not principal.allows(scope):
            return Refusal(grpc.StatusCode.PERMISSION_DENIED,
                           f"client {principal.name!r} lacks scope {scope!r} for {method}",
                           "missing_scope")
        return principal
