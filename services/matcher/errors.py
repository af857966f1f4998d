"""Errors the matcher's core raises; the servicer maps each to one gRPC status code.

Messages may reach clients and logs: anything that can carry a URL goes through `mask_urls`
(credentials in a Qdrant URL are never shown), and values quoted from requests are cut short
(`shown`), so that a refused request never makes a large message.
"""

from __future__ import annotations

from segue.log import mask_secrets

# Longest value of a request quoted in an error message.
SHOWN_CHARACTERS = 64


def mask_url(url: str) -> str:
    """The URL with its userinfo and credential query parameters replaced by "***"."""
    return mask_urls(url)


def mask_urls(text: str) -> str:
    """`text` with every URL's userinfo and credential query parameters replaced by "***"."""
    return mask_secrets(text)


def shown(value: str) -> str:
    """A client's value quoted for an error message: repr'd, cut to SHOWN_CHARACTERS."""
    if len(value) <= SHOWN_CHARACTERS:
        return repr(value)
    return f"{value[:SHOWN_CHARACTERS]!r}... ({len(value)} characters)"


class MatcherError(Exception):
    """Base of the matcher's expected failures."""


class NotFoundError(MatcherError):
    """A song id that is not stored (NOT_FOUND)."""

    def __init__(self, song_id: str) -> None:
        super().__init__(f"song {shown(song_id)} is not stored")
        self.song_id = song_id


class InvalidArgumentError(MatcherError):
    """A malformed or contradictory request (INVALID_ARGUMENT); the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class OverloadedError(MatcherError):
    """Too many expensive calls are running or waiting (RESOURCE_EXHAUSTED); retry later."""


class StoreUnavailableError(MatcherError):
    """The Qdrant store cannot be reached now (UNAVAILABLE); retrying later may succeed. The
    message is masked: it may quote the server's URL."""

    def __init__(self, message: str) -> None:
        super().__init__(mask_urls(message))
