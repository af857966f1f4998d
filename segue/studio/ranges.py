"""HTTP Range requests (RFC 9110, section 14) for serving clip files: one byte range at most.

Browsers ask audio elements' files in ranges (`bytes=0-`, then seeks). The Studio answers a
single range with 206; anything else it cannot serve exactly as asked (a malformed header,
another unit, several ranges, a range past the end) is refused with 416 and
`Content-Range: bytes */size`, rather than silently answered whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# first-last, first- or -suffix; ASCII digits only (re's \d also matches other scripts'
# digits), and no more of them than any file size needs.
_SPEC = re.compile(r"([0-9]{0,19})-([0-9]{0,19})")


class RangeNotSatisfiable(ValueError):  # noqa: N818  # named after the HTTP status it becomes
    """The Range header cannot be served: answer 416 with `Content-Range: bytes */size`."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end` of a file, both inclusive (as in Content-Range)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The Content-Range header value of this range in a file of `size` bytes."""
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range a Range header asks of a file of `size` bytes; None: the whole file.

    Supports `bytes=first-last` (last is clipped to the file), `bytes=first-` and
    `bytes=-suffix` (the last `suffix` bytes, the whole file when larger). Raises
    RangeNotSatisfiable for a malformed header, a unit other than bytes, several ranges,
    `last` before `first`, a first byte at or past the end, an empty suffix or an empty file.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if header is None or not header.strip():
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise RangeNotSatisfiable(f"not a bytes range: {header[:64]!r}")
    match = _SPEC.fullmatch(spec.strip())
    if match is None:  # also several ranges: the comma never matches
        raise RangeNotSatisfiable(f"not one byte range: {header[:64]!r}")
    first, last = match.groups()
    if first:
        return _from_first(int(first), int(last) if last else None, size)
    if last:
        return _suffix(int(last), size)
    raise RangeNotSatisfiable("a byte range needs a first byte or a suffix length")


def _from_first(first: int, last: int | None, size: int) -> ByteRange:
    """`first`..`last` (inclusive; None: to the end), clipped to a file of `size` bytes."""
    if last is not None and last < first:
        raise RangeNotSatisfiable(f"the range ends ({last}) before it starts ({first})")
    if first >= size:
        raise RangeNotSatisfiable(f"the range starts at byte {first} of a {size}-byte file")
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end)


def _suffix(length: int, size: int) -> ByteRange:
    """The last `length` bytes of a file of `size` bytes (all of them when fewer)."""
    if length == 0 or size == 0:
        raise RangeNotSatisfiable(f"no bytes in the last {length} of a {size}-byte file")
    return ByteRange(max(0, size - length), size - 1)


__all__ = ["ByteRange", "RangeNotSatisfiable", "parse_range"]
