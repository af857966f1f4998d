"""Errors the mixer reports to clients."""

from __future__ import annotations


class MixInputError(ValueError):
    """A client input cannot be rendered; the message names the input and why.

    The servicer answers INVALID_ARGUMENT with this message.
    """


class MixLimitError(ValueError):
    """An input is over a size limit; the servicer answers RESOURCE_EXHAUSTED."""
