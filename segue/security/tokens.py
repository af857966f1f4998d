"""The bearer-token file: which client holds which token and scopes.

One token per line, `#` comments and blank lines ignored:

    <client-name> <scope>[,<scope>...] <token>

Scopes are `read`, `analyze`, `write`, `render` (see scopes.py) or `*` for all. The token may be
written as `sha256:<64 hex digits>`, the SHA-256 of the token, so the file never holds the
secret itself. Plain tokens must be at least 32 characters. The file is re-read when its
modification time or size changes (checked at most once a second), so tokens rotate without a
restart; a file that becomes unreadable or invalid keeps the last good tokens and logs why.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from segue.log import get_logger
from segue.security.scopes import SCOPES

log = get_logger("segue.security")

MIN_TOKEN_CHARS = 32
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HASHED = re.compile(r"^sha256:([0-9a-f]{64})$")
_RECHECK_S = 1.0


class TokenFileError(ValueError):
    """The token file cannot be read or has an invalid line (the message names the line)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated client: its name (for logs and limits) and its scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token, the key tokens are looked up by."""
    return hashlib.sha256(token.encode()).digest()


def _parse_line(number: int, line: str) -> tuple[bytes, Principal]:
    parts = line.split()
    if len(parts) != 3:
        raise TokenFileError(f"line {number}: expected '<name> <scopes> <token>'")
    name, scope_list, secret = parts
    if not _NAME.match(name):
        raise TokenFileError(f"line {number}: client name must match {_NAME.pattern}")
    scopes = frozenset(scope_list.split(","))
    unknown = scopes - SCOPES
    if unknown:
        raise TokenFileError(f"line {number}: unknown scope(s) {sorted(unknown)}")
    hashed = _HASHED.match(secret)
    if hashed:
        return bytes.fromhex(hashed.group(1)), Principal(name, scopes)
    if len(secret) < MIN_TOKEN_CHARS:
        raise TokenFileError(f"line {number}: tokens must be at least {MIN_TOKEN_CHARS} chars")
    return token_digest(secret), Principal(name, scopes)


def parse_tokens(text: str) -> dict[bytes, Principal]:
    """Token digests to principals; raises TokenFileError naming the first bad line."""
    table: dict[bytes, Principal] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        digest, principal = _parse_line(number, line)
        if digest in table:
            raise TokenFileError(f"line {number}: the same token appears twice")
        table[digest] = principal
    return table


class TokenFile:
    """The token table of one file, reloaded when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self._table = parse_tokens(self._read())  # a bad file at start-up is fatal
        self._signature = self._stat()

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TokenFileError(f"cannot read token file {self.path}: {e}") from None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the symlinks a Secret volume swaps atomically
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < _RECHECK_S:
            return
        self._checked_at = now
        signature = self._stat()
        if signature == self._signature:
            return
        try:
            table = parse_tokens(self._read())
        except TokenFileError as e:
            log.error("token file not reloaded; keeping the previous tokens", error=str(e))
        else:
            self._table = table
            log.info("token file reloaded", path=str(self.path), tokens=len(table))
        self._signature = signature

    def lookup(self, token: str) -> Principal | None:
        """The principal holding `token`, or None."""
        with self._lock:
            self._maybe_reload()
            table = self._table
        return table.get(token_digest(token))

    def __len__(self) -> int:
        return len(self._table)
