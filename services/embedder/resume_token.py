"""Resume tokens: a stream's full state, versioned and HMAC-signed.

Layout: MAGIC (4 bytes) | format version (1 byte) | HMAC-SHA256 (32 bytes) | payload.
The HMAC covers the magic, the version and the payload, and is checked before anything is
decompressed or parsed, so a foreign or tampered token is rejected without work.

Version 2 payload (little-endian): u32 length + the header fields, u32 length + a zlib stream
of the numeric arrays (written with stored blocks: float state barely deflates), then the
byte (uint8) arrays as they are (the structure accumulator's own checksummed state).
Each array is written as name, dtype (one of a fixed few), shape and raw data; nothing is
ever unpickled. Version 1 tokens (an `.npz` archive, zlib level 6) are still read, so tokens
issued before an upgrade stay valid.
"""

from __future__ import annotations

import hmac
import io
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Arrays = dict[str, npt.NDArray[np.generic]]

MAGIC = b"SGRT"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_MAC_BYTES = 32
_HEADER = len(MAGIC) + 1
# Decompressed payloads beyond this are refused (a song's state is far smaller).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
# Level 0 (stored blocks, still a deflate stream): the numeric state is float noise that level 1
# shrinks by ~5 % at 60x the cost (0.6 ms per checkpoint of a 2-minute song).
_ZLIB_LEVEL = 0
_DTYPES = {np.dtype(t).str: np.dtype(t) for t in ("<f4", "<f8", "<i8", "|u1")}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class TokenError(ValueError):
    """The token is corrupt, signed with another key, or from another model or version."""


@dataclass(frozen=True)
class TokenContents:
    song_id: str
    model_name: str
    model_version: str
    model_sha256: str
    arrays: Arrays


def _pack_arrays(arrays: list[tuple[str, npt.NDArray[np.generic]]]) -> bytes:
    parts = [struct.pack("<H", len(arrays))]
    for name, array in arrays:
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        code = dtype.str
        if code not in _DTYPES:
            raise ValueError(f"token array {name!r} has unsupported dtype {array.dtype}")
        encoded = name.encode()
        parts.append(struct.pack(f"<B{len(encoded)}sB{len(code)}sB", len(encoded), encoded,
                                 len(code), code.encode(), array.ndim))
        parts.extend(_U64.pack(d) for d in array.shape)
        parts.append(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return b"".join(parts)


def _unpack_arrays(data: bytes | memoryview, out: Arrays) -> None:
    view = memoryview(data)
    (count,) = struct.unpack_from("<H", view)
    pos = 2
    for _ in range(count):
        name_len = view[pos]
        name = bytes(view[pos + 1 : pos + 1 + name_len]).decode()
        pos += 1 + name_len
        code_len = view[pos]
        dtype = _DTYPES.get(bytes(view[pos + 1 : pos + 1 + code_len]).decode())
        if dtype is None:
            raise ValueError(f"array {name!r} has an unsupported dtype")
        pos += 1 + code_len
        ndim = view[pos]
        pos += 1
        shape = tuple(_U64.unpack_from(view, pos + 8 * i)[0] for i in range(ndim))
        pos += 8 * ndim
        size = dtype.itemsize * math.prod(shape)
        if pos + size > len(view):
            raise ValueError(f"array {name!r} is truncated")
        out[name] = np.frombuffer(view[pos : pos + size], dtype=dtype).reshape(shape).copy()
        pos += size
    if pos != len(view):
        raise ValueError("trailing bytes after the arrays")


def _read_block(view: memoryview, pos: int) -> tuple[memoryview, int]:
    (length,) = _U32.unpack_from(view, pos)
    start = pos + _U32.size
    if start + length > len(view):
        raise ValueError("a block is truncated")
    return view[start : start + length], start + length


class TokenCodec:
    """Signs and verifies tokens with one deployment's key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the token key must not be empty")
        self._key = key

    def _mac(self, data: bytes) -> bytes:
        return hmac.digest(self._key, data, "sha256")

    def encode(self, contents: TokenContents) -> bytes:
        header = "\n".join([contents.song_id, contents.model_name, contents.model_version,
                            contents.model_sha256]).encode()
        numeric = [(k, v) for k, v in contents.arrays.items() if v.dtype != np.uint8]
        raw = [(k, v) for k, v in contents.arrays.items() if v.dtype == np.uint8]
        packed = zlib.compress(_pack_arrays(numeric), _ZLIB_LEVEL)
        payload = b"".join([_U32.pack(len(header)), header, _U32.pack(len(packed)), packed,
                            _pack_arrays(raw)])
        prefix = MAGIC + bytes([FORMAT_VERSION])
        return prefix + self._mac(prefix + payload) + payload

    def decode(self, token: bytes) -> TokenContents:
        if len(token) < _HEADER + _MAC_BYTES or token[: len(MAGIC)] != MAGIC:
            raise TokenError("resume token is corrupt (not a Segue resume token)")
        version = token[len(MAGIC)]
        mac = token[_HEADER : _HEADER + _MAC_BYTES]
        payload = token[_HEADER + _MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(token[:_HEADER] + payload)):
            raise TokenError(
                "resume token signature is invalid: it is corrupt or was issued by another "
                "deployment (different SEGUE_TOKEN_KEY)"
            )
        if version not in READABLE_VERSIONS:
            raise TokenError(
                f"resume token format version {version} is not supported (this server reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        try:
            header, arrays = (_decode_v1 if version == 1 else _decode_v2)(payload)
            fields = header.decode().split("\n")
        except TokenError:
            raise
        except Exception as e:  # zlib, struct and npy parsers raise assorted types
            raise TokenError(f"resume token payload is corrupt: {e}") from e
        if len(fields) != 4:
            raise TokenError("resume token header is corrupt")
        song_id, name, version_str, sha = fields
        return TokenContents(song_id, name, version_str, sha, arrays)


def _inflate(data: bytes | memoryview) -> bytes:
    inflater = zlib.decompressobj()
    raw = inflater.decompress(data, MAX_PAYLOAD_BYTES)
    if inflater.unconsumed_tail:
        raise TokenError("resume token payload is too large")
    if not inflater.eof:
        raise ValueError("the compressed arrays are truncated")
    return raw


def _decode_v2(payload: bytes) -> tuple[bytes, Arrays]:
    view = memoryview(payload)
    header, pos = _read_block(view, 0)
    packed, pos = _read_block(view, pos)
    arrays: Arrays = {}
    _unpack_arrays(_inflate(packed), arrays)
    _unpack_arrays(view[pos:], arrays)
    return bytes(header), arrays


def _decode_v1(payload: bytes) -> tuple[bytes, Arrays]:
    with np.load(io.BytesIO(_inflate(payload)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays.pop("_header").tobytes(), arrays


__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "TokenCodec", "TokenContents", "TokenError"]
