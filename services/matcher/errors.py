"""Errors the matcher's core raises; the servicer maps each to one gRPC status code."""

from __future__ import annotations


class MatcherError(Exception):
    """Base of the matcher's expected failures."""


class NotFoundError(MatcherError):
    """A song id that is not stored (NOT_FOUND)."""

    def __init__(self, song_id: str) -> None:
        super().__init__(f"song {song_id!r} is not stored")
        self.song_id = song_id


class InvalidArgumentError(MatcherError):
    """A malformed or contradictory request (INVALID_ARGUMENT); the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class StoreUnavailableError(MatcherError):
    """The Qdrant store cannot be reached now (UNAVAILABLE); retrying later may succeed."""
