"""Resume tokens: a stream's full state, versioned, compressed and HMAC-signed.

Layout: MAGIC (4 bytes) | format version (1 byte) | HMAC-SHA256 (32 bytes) | zlib(npz payload).
The HMAC covers the magic, the version and the compressed payload, and is checked before
anything is decompressed or parsed, so a foreign or tampered token is rejected without work.
The payload is an `.npz` archive read with pickling disabled: named arrays only, no code.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Arrays = dict[str, npt.NDArray[np.generic]]

MAGIC = b"SGRT"
FORMAT_VERSION = 1
_MAC_BYTES = 32
_HEADER = len(MAGIC) + 1
# Decompressed payloads beyond this are refused (a song's state is far smaller).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


class TokenError(ValueError):
    """The token is corrupt, signed with another key, or from another model or version."""


@dataclass(frozen=True)
class TokenContents:
    song_id: str
    model_name: str
    model_version: str
    model_sha256: str
    arrays: Arrays


class TokenCodec:
    """Signs and verifies tokens with one deployment's key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the token key must not be empty")
        self._key = key

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def encode(self, contents: TokenContents) -> bytes:
        header = np.frombuffer(
            "\n".join([contents.song_id, contents.model_name, contents.model_version,
                       contents.model_sha256]).encode(),
            dtype=np.uint8,
        )
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, _header=header, **contents.arrays)
        body = zlib.compress(buffer.getvalue(), 6)
        prefix = MAGIC + bytes([FORMAT_VERSION])
        return prefix + self._mac(prefix + body) + body

    def decode(self, token: bytes) -> TokenContents:
        if len(token) < _HEADER + _MAC_BYTES or token[: len(MAGIC)] != MAGIC:
            raise TokenError("resume token is corrupt (not a Segue resume token)")
        version = token[len(MAGIC)]
        mac = token[_HEADER : _HEADER + _MAC_BYTES]
        body = token[_HEADER + _MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(token[:_HEADER] + body)):
            raise TokenError(
                "resume token signature is invalid: it is corrupt or was issued by another "
                "deployment (different SEGUE_TOKEN_KEY)"
            )
        if version != FORMAT_VERSION:
            raise TokenError(
                f"resume token format version {version} is not supported (this server reads "
                f"version {FORMAT_VERSION})"
            )
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(body, MAX_PAYLOAD_BYTES)
            if inflater.unconsumed_tail:
                raise TokenError("resume token payload is too large")
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            fields = arrays.pop("_header").tobytes().decode().split("\n")
        except TokenError:
            raise
        except Exception as e:  # zlib, zip and npy parsers raise assorted types
            raise TokenError(f"resume token payload is corrupt: {e}") from e
        if len(fields) != 4:
            raise TokenError("resume token header is corrupt")
        song_id, name, version_str, sha = fields
        return TokenContents(song_id, name, version_str, sha, arrays)


__all__ = ["FORMAT_VERSION", "TokenCodec", "TokenContents", "TokenError"]
