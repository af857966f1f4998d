"""Resume tokens: a stream's full state, versioned, encrypted, authenticated and expiring.

Version 3 (written): MAGIC (4 bytes) | format version (1 byte) | nonce (12 bytes) |
AES-256-GCM ciphertext of the payload | GCM tag (16 bytes). The AES key is derived from
SEGUE_TOKEN_KEY with HKDF-SHA256 (fixed salt and info naming this use); every token gets a
fresh random 96-bit nonce; the associated data is MAGIC + version, so neither can be swapped.
Nothing of a token is readable without the key (not the song id, not the model), and the tag
is checked before anything is decompressed or parsed, so a foreign or tampered token is
refused without work. Random nonces stay safe for about 2**32 tokens per key: rotate the key
long before a deployment issues that many (at 256 streams checkpointing every 5 s, a year of
one replica's tokens is about 2**30).

Payload (little-endian): u64 expiry (Unix seconds; 0: never) | u32 length + the header (song
id, model name, model version, model SHA-256, each u16 length + UTF-8) | u32 length + a zlib
stream of the numeric arrays (stored blocks: float state barely deflates) | the byte (uint8)
arrays as they are (the structure accumulator's own checksummed state). Each array is written
as name, dtype (one of a fixed few), shape and raw data; nothing is ever unpickled.

Versions 1 (zlib of an `.npz`) and 2 (as 3's payload without the expiry, header fields joined
by newlines) were HMAC-SHA256-signed but not encrypted, and never expire. They are refused by
default; `accept_legacy` (SEGUE_TOKEN_ACCEPT_LEGACY) reads them again, for the hours a rolling
upgrade needs to let streams checkpointed before it resume; unset it afterwards.

`check_snapshot` is the other half of reading a token: the arrays of a token that decrypts
are still checked against the shapes, dtypes, sizes and ranges the model implies before a
stream is rebuilt from them, so even a token forged with the key cannot crash the server or
put NaN into an analysis.
"""

from __future__ import annotations

import hmac
import io
import math
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from segue.audio import validate_format
from segue.embedding.loudness import LoudnessMeter
from segue.embedding.model import ModelSpec
from segue.resample import StreamingResampler
from segue.structure.state_codec import StructureState
from segue.structure.state_codec import decode as decode_structure
from segue.v1 import common_pb2

Arrays = dict[str, npt.NDArray[np.generic]]

MAGIC = b"SGRT"
FORMAT_VERSION = 3
LEGACY_VERSIONS = (1, 2)
_MAC_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER = len(MAGIC) + 1
_HKDF_SALT = b"segue resume token"
_HKDF_INFO = b"segue resume token v3: AES-256-GCM"
# Decompressed payloads beyond this are refused (a song's state is far smaller).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
# Level 0 (stored blocks, still a deflate stream): the numeric state is float noise that level 1
# shrinks by ~5 % at 60x the cost (0.6 ms per checkpoint of a 2-minute song).
_ZLIB_LEVEL = 0
_DTYPES = {np.dtype(t).str: np.dtype(t) for t in ("<f4", "<f8", "<i8", "|u1")}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class TokenError(ValueError):
    """The token is corrupt, sealed with another key, expired, from another model or version,
    or holds a state that does not fit the model."""


class TokenExpiredError(TokenError):
    """The token was genuine but is past its expiry."""


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


def _pack_header(fields: list[str]) -> bytes:
    parts = []
    for field in fields:
        encoded = field.encode()
        parts += [_U16.pack(len(encoded)), encoded]
    return b"".join(parts)


def _unpack_header(data: bytes) -> list[str]:
    fields, pos = [], 0
    while pos < len(data):
        (length,) = _U16.unpack_from(data, pos)
        if pos + 2 + length > len(data):
            raise ValueError("the header is truncated")
        fields.append(bytes(data[pos + 2 : pos + 2 + length]).decode())
        pos += 2 + length
    return fields


class TokenCodec:
    """Seals and opens tokens with one deployment's key.

    `ttl_s` > 0 gives every token issued an expiry that far ahead (0: never expires);
    `accept_legacy` also reads the signed, unencrypted versions 1 and 2; `clock` gives Unix
    time (tests replace it).
    """

    def __init__(self, key: bytes, *, ttl_s: float = 0.0, accept_legacy: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        if not key:
            raise ValueError("the token key must not be empty")
        if not (math.isfinite(ttl_s) and ttl_s >= 0):
            raise ValueError(f"the token TTL must be a number >= 0, got {ttl_s}")
        self._key = key
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
        self._aead = AESGCM(hkdf.derive(key))
        self.ttl_s = ttl_s
        self.accept_legacy = accept_legacy
        self._clock = clock

    def encode(self, contents: TokenContents) -> bytes:
        return self.seal(self.payload(contents))

    def payload(self, contents: TokenContents) -> bytes:
        """The plaintext that `encode` seals: `contents` and the expiry, as laid out above."""
        header = _pack_header([contents.song_id, contents.model_name, contents.model_version,
                               contents.model_sha256])
        numeric = [(k, v) for k, v in contents.arrays.items() if v.dtype != np.uint8]
        raw = [(k, v) for k, v in contents.arrays.items() if v.dtype == np.uint8]
        packed = zlib.compress(_pack_arrays(numeric), _ZLIB_LEVEL)
        expires_at = math.ceil(self._clock() + self.ttl_s) if self.ttl_s > 0 else 0
        return b"".join([_U64.pack(expires_at), _U32.pack(len(header)), header,
                         _U32.pack(len(packed)), packed, _pack_arrays(raw)])

    def seal(self, payload: bytes) -> bytes:
        """A version 3 token of `payload` (bytes laid out as the module docstring says)."""
        prefix = MAGIC + bytes([FORMAT_VERSION])
        nonce = os.urandom(_NONCE_BYTES)
        return prefix + nonce + self._aead.encrypt(nonce, payload, prefix)

    def decode(self, token: bytes) -> TokenContents:
        if len(token) < _HEADER or token[: len(MAGIC)] != MAGIC:
            raise TokenError("resume token is corrupt (not a Segue resume token)")
        version = token[len(MAGIC)]
        parse: Callable[[bytes], tuple[int, bytes, Arrays]]
        if version == FORMAT_VERSION:
            parse, payload = _parse_v3, self._open(token)
        elif version in LEGACY_VERSIONS:
            parse, payload = (_decode_v1 if version == 1 else _decode_v2), self._verify(token)
        else:
            readable = (*LEGACY_VERSIONS, FORMAT_VERSION) if self.accept_legacy else (3,)
            raise TokenError(f"resume token format version {version} is not supported (this "
                             f"server reads versions {', '.join(map(str, readable))})")
        try:
            expires_at, header, arrays = parse(payload)
            fields = (header.decode().split("\n") if version in LEGACY_VERSIONS
                      else _unpack_header(header))
        except TokenError:
            raise
        except Exception as e:  # zlib, struct and npy parsers raise assorted types
            raise TokenError(f"resume token payload is corrupt: {e}") from None
        if len(fields) != 4:
            raise TokenError("resume token header is corrupt")
        self._check_expiry(expires_at)
        song_id, name, version_str, sha = fields
        return TokenContents(song_id, name, version_str, sha, arrays)

    def _open(self, token: bytes) -> bytes:
        if len(token) < _HEADER + _NONCE_BYTES + _TAG_BYTES:
            raise TokenError("resume token is corrupt (too short)")
        nonce = token[_HEADER : _HEADER + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, token[_HEADER + _NONCE_BYTES :], token[:_HEADER])
        except InvalidTag:
            raise TokenError(
                "resume token could not be authenticated: it is corrupt or was issued by "
                "another deployment (different SEGUE_TOKEN_KEY)"
            ) from None

    def _verify(self, token: bytes) -> bytes:
        version = token[len(MAGIC)]
        if not self.accept_legacy:
            raise TokenError(
                f"resume token format version {version} (signed but not encrypted, issued "
                f"before an upgrade) is no longer accepted: restart the song from the "
                f"beginning (SEGUE_TOKEN_ACCEPT_LEGACY=1 reads such tokens during an upgrade)")
        if len(token) < _HEADER + _MAC_BYTES:
            raise TokenError("resume token is corrupt (too short)")
        mac = token[_HEADER : _HEADER + _MAC_BYTES]
        payload = token[_HEADER + _MAC_BYTES :]
        if not hmac.compare_digest(mac, hmac.digest(self._key, token[:_HEADER] + payload,
                                                    "sha256")):
            raise TokenError(
                "resume token signature is invalid: it is corrupt or was issued by another "
                "deployment (different SEGUE_TOKEN_KEY)"
            )
        return payload

    def _check_expiry(self, expires_at: int) -> None:
        if expires_at and self._clock() >= expires_at:
            when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise TokenExpiredError(
                f"resume token expired at {when} (tokens live SEGUE_TOKEN_TTL_S seconds after "
                "their checkpoint): restart the song from the beginning")


def _inflate(data: bytes | memoryview) -> bytes:
    inflater = zlib.decompressobj()
    raw = inflater.decompress(data, MAX_PAYLOAD_BYTES)
    if inflater.unconsumed_tail:
        raise TokenError("resume token payload is too large")
    if not inflater.eof:
        raise ValueError("the compressed arrays are truncated")
    return raw


def _parse_v3(payload: bytes) -> tuple[int, bytes, Arrays]:
    (expires_at,) = _U64.unpack_from(payload)
    _, header, arrays = _decode_v2(memoryview(payload)[_U64.size :])
    return expires_at, header, arrays


def _decode_v2(payload: bytes | memoryview) -> tuple[int, bytes, Arrays]:
    view = memoryview(payload)
    header, pos = _read_block(view, 0)
    packed, pos = _read_block(view, pos)
    arrays: Arrays = {}
    _unpack_arrays(_inflate(packed), arrays)
    _unpack_arrays(view[pos:], arrays)
    return 0, bytes(header), arrays


def _decode_v1(payload: bytes) -> tuple[int, bytes, Arrays]:
    with np.load(io.BytesIO(_inflate(payload)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return 0, arrays.pop("_header").tobytes(), arrays


# ---- what a token's arrays may hold ----------------------------------------------------------

# Audio in a stream's state (input history, resampled samples) stays within a few times
# MAX_ABS_SAMPLE (the resampler's filter overshoots a little); model vectors far below this.
_MAX_AUDIO = 256.0
_MAX_MODEL_VALUE = 1e9
_MAX_SEGMENT_S = 3600.0
_DTYPE_OF = {
    "format": "<i8", "counters": "<i8", "settings": "<f8", "resampler_history": "<f4",
    "buffer": "<f4", "state": "<f4", "feel": "<f4", "segment_entry": "<f4",
    "segment_exit": "<f4", "segment_energy": "<f8", "segment_windows": "<i8",
    "loudness_zi": "<f8", "loudness_energies": "<f8", "loudness_partial": "<f8",
    "structure": "|u1",
}


@dataclass(frozen=True)
class _Position:
    """The counters of a snapshot, checked against each other and the model."""

    rate: int
    consumed: int
    produced: int
    history_start: int
    windows_cut: int
    samples_cut: int


def check_snapshot(arrays: Arrays, spec: ModelSpec, max_song_s: float) -> None:
    """TokenError (naming the array) unless `arrays` is a state that `SongStream.snapshot`
    of an unfinished stream of `spec`'s model, at most `max_song_s` long, could have made:
    every array present with its dtype and shape, floats finite and in range, counters
    consistent with the array sizes they imply."""
    for name, dtype in _DTYPE_OF.items():
        if name not in arrays:
            raise TokenError(f"resume token state is invalid: array {name!r} is missing")
        if arrays[name].dtype != np.dtype(dtype):
            raise TokenError(f"resume token state is invalid: array {name!r} is "
                             f"{arrays[name].dtype}, expected {np.dtype(dtype)}")
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise TokenError(f"resume token state is invalid: array {name!r} holds NaN or Inf")
    position = _check_counters(arrays, spec, max_song_s)
    _check_audio(arrays, spec, position)
    _check_model_vectors(arrays, spec, position)
    _check_loudness(arrays, spec, position)
    _check_structure(arrays, spec, position)


def _shape(arrays: Arrays, name: str, *shape: int) -> npt.NDArray[np.generic]:
    array = arrays[name]
    if array.shape != shape:
        raise TokenError(f"resume token state is invalid: array {name!r} has shape "
                         f"{array.shape}, expected {shape}")
    return array


def _invalid(what: str) -> TokenError:
    return TokenError(f"resume token state is invalid: {what}")


def _check_counters(arrays: Arrays, spec: ModelSpec, max_song_s: float) -> _Position:
    rate, channels, sample_format = (int(v) for v in _shape(arrays, "format", 3))
    if not (0 < rate < 2**31 and 0 <= channels < 2**31 and 0 <= sample_format < 2**31):
        raise _invalid(f"array 'format' holds {rate, channels, sample_format}")
    try:
        validate_format(common_pb2.AudioFormat(
            sample_rate_hz=rate, channels=channels,
            sample_format=common_pb2.SampleFormat.ValueType(sample_format)))
    except ValueError as e:
        raise _invalid(f"array 'format': {e}") from None
    (consumed, produced, history_start, r_finished, windows_cut, samples_cut,
     finished) = (int(v) for v in _shape(arrays, "counters", 7))
    if r_finished or finished:
        raise TokenError("resume token is from a stream that had already ended")
    if not 0 <= consumed <= max_song_s * rate:
        raise _invalid(f"array 'counters' puts the stream at frame {consumed}, outside 0 to "
                       f"the maximum song length ({max_song_s:g} s)")
    expected = _resampler_layout(rate, spec.sample_rate_hz, consumed)
    actual = (produced, history_start, arrays["resampler_history"].size)
    if actual != expected or arrays["resampler_history"].ndim != 1:
        raise _invalid(f"the resampler's counters {actual} do not match its input of "
                       f"{consumed} frames (expected {expected})")
    window = spec.window_samples
    if windows_cut != produced // window or samples_cut != windows_cut * window:
        raise _invalid(f"array 'counters' holds {windows_cut} windows ({samples_cut} "
                       f"samples) where {produced} resampled samples make {produced // window}")
    return _Position(rate, consumed, produced, history_start, windows_cut, samples_cut)


def _resampler_layout(rate_in: int, rate_out: int, consumed: int) -> tuple[int, int, int]:
    """(produced, history_start, history length) of an unfinished resampler that consumed
    `consumed` samples: the same whatever the chunking. Once it has produced output (after
    at most `taps` inputs, half its filter), the layout repeats every `down` inputs, shifted
    by `up` outputs; so only a few hundred samples of zeros are ever resampled here."""
    if rate_in == rate_out:
        return consumed, 0, 0
    gcd = math.gcd(rate_in, rate_out)
    up, down = rate_out // gcd, rate_in // gcd
    resampler = StreamingResampler(rate_in, rate_out)
    taps = resampler.state().history.size  # a fresh resampler holds one filter of silence
    periods = max(0, (consumed - taps - 1) // down)
    resampler.push(np.zeros(consumed - periods * down, dtype=np.float32))
    state = resampler.state()
    return (state.produced + periods * up, state.history_start + periods * down,
            state.history.size)


def _check_audio(arrays: Arrays, spec: ModelSpec, position: _Position) -> None:
    buffered = position.produced - position.windows_cut * spec.window_samples
    _shape(arrays, "buffer", buffered)
    for name in ("resampler_history", "buffer"):
        if arrays[name].size and np.abs(arrays[name]).max() > _MAX_AUDIO:
            raise _invalid(f"array {name!r} holds samples beyond ±{_MAX_AUDIO:g}")
    segment_s, min_tail_s = (float(v) for v in _shape(arrays, "settings", 2))
    if not (0 < segment_s <= _MAX_SEGMENT_S and 0 <= min_tail_s <= _MAX_SEGMENT_S):
        raise _invalid(f"array 'settings' holds segment_s {segment_s}, min_tail_s "
                       f"{min_tail_s}")


def _check_model_vectors(arrays: Arrays, spec: ModelSpec, position: _Position) -> None:
    segment_s = float(arrays["settings"][0])
    per_segment = max(1, round(segment_s / spec.window_s))
    segments = -(-position.windows_cut // per_segment)
    _shape(arrays, "state", spec.state_dim)
    _shape(arrays, "feel", spec.feel_dim)
    _shape(arrays, "segment_entry", segments, spec.transition_dim)
    _shape(arrays, "segment_exit", segments, spec.transition_dim)
    for name in ("state", "feel", "segment_entry", "segment_exit"):
        if arrays[name].size and np.abs(arrays[name]).max() > _MAX_MODEL_VALUE:
            raise _invalid(f"array {name!r} holds values beyond ±{_MAX_MODEL_VALUE:g}")
    energy = _shape(arrays, "segment_energy", segments)
    if energy.size and energy.min() < 0:
        raise _invalid("array 'segment_energy' holds a negative energy")
    counts = [int(c) for c in _shape(arrays, "segment_windows", segments)]
    expected = [min(per_segment, position.windows_cut - i * per_segment)
                for i in range(segments)]
    if counts != expected:
        raise _invalid(f"array 'segment_windows' does not split {position.windows_cut} "
                       f"windows into segments of {per_segment}")


def _check_loudness(arrays: Arrays, spec: ModelSpec, position: _Position) -> None:
    meter = LoudnessMeter(spec.sample_rate_hz)
    _shape(arrays, "loudness_zi", *meter.zi.shape)
    energies = _shape(arrays, "loudness_energies", position.samples_cut // meter.quarter)
    partial_sum, partial_count = (float(v) for v in _shape(arrays, "loudness_partial", 2))
    if (energies.size and energies.min() < 0) or partial_sum < 0:
        raise _invalid("the loudness arrays hold a negative energy")
    if partial_count != position.samples_cut % meter.quarter:
        raise _invalid(f"array 'loudness_partial' counts {partial_count:g} samples where "
                       f"{position.samples_cut % meter.quarter} are expected")


def _check_structure(arrays: Arrays, spec: ModelSpec, position: _Position) -> None:
    try:
        state = decode_structure(_shape(arrays, "structure", arrays["structure"].size).tobytes())
    except ValueError as e:
        raise _invalid(f"array 'structure': {e}") from None
    windows = np.concatenate([p.reshape(-1, 3) for p in state.windows.parts])
    source = "mel" if position.windows_cut else None
    if (state.sample_rate_hz, state.source, len(windows)) != (
            spec.sample_rate_hz, source, position.windows_cut):
        raise _invalid(f"array 'structure' holds {len(windows)} windows of "
                       f"{state.sample_rate_hz} Hz audio ({state.source}), expected "
                       f"{position.windows_cut} of {spec.sample_rate_hz} Hz ({source})")
    if np.any(windows[:, 0] != spec.window_samples) or state.tail.size:
        raise _invalid("array 'structure' holds windows of the wrong length")
    if not _structure_finite(state, spec):
        raise _invalid("array 'structure' holds NaN or Inf features")


def _structure_finite(state: StructureState, spec: ModelSpec) -> bool:
    parts = [*state.onset.parts, *state.tonal.parts, *state.timbre.parts]
    if state.previous_mel is not None:
        if state.previous_mel.shape != (spec.n_mels,):
            return False
        parts.append(state.previous_mel)
    return all(np.isfinite(part).all() for part in parts)


__all__ = [
    "FORMAT_VERSION", "LEGACY_VERSIONS", "TokenCodec", "TokenContents", "TokenError",
    "TokenExpiredError", "check_snapshot",
]
