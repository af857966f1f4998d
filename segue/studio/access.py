"""Who may do what in the Studio: invite tokens, browser logins, CSRF tokens and the admin
password. Only SHA-256 digests of invite tokens and cookies are stored, so a copy of the
database lets no one in."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path

# Names of the cookies: the login, and the double-submit CSRF cookie of forms shown before
# anyone has signed in (consent and admin login).
LOGIN_COOKIE = "segue_studio"
FORM_COOKIE = "segue_studio_form"
CSRF_HEADER = "x-csrf-token"
MIN_ADMIN_PASSWORD_CHARS = 16


def new_token() -> str:
    """A fresh unguessable token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The hex SHA-256 the store keeps in place of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison (no timing oracle on tokens)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class AdminPassword:
    """The admin password from a file (first line), read at start; None closes admin pages."""

    def __init__(self, password: str | None) -> None:
        if password is not None and len(password) < MIN_ADMIN_PASSWORD_CHARS:
            raise ValueError(f"the admin password must be at least "
                             f"{MIN_ADMIN_PASSWORD_CHARS} characters")
        self._digest = digest(password) if password is not None else None

    @classmethod
    def from_file(cls, path: str) -> AdminPassword:
        if not path:
            return cls(None)
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls(lines[0].strip() if lines else "")

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def check(self, attempt: str) -> bool:
        return self._digest is not None and same(digest(attempt), self._digest)


class FailureLimiter:
    """At most `limit` failed admin logins per client address in `window_s` seconds."""

    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client)) >= self._limit

    def fail(self, client: str) -> None:
        with self._lock:
            self._failures[client] = [*self._recent(client), time.monotonic()]
            if len(self._failures) > 10_000:  # bounded: forget the oldest clients
                self._failures.pop(next(iter(self._failures)))

    def _recent(self, client: str) -> list[float]:
        cutoff = time.monotonic() - self._window_s
        return [t for t in self._failures.get(client, []) if t > cutoff]


__all__ = ["CSRF_HEADER", "FORM_COOKIE", "LOGIN_COOKIE", "AdminPassword", "FailureLimiter",
           "digest", "new_token", "same"]
