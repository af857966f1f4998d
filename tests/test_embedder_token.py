"""Resume tokens: sealed, versioned, compact; anything else is refused with a reason.

(Encryption, expiry and the legacy versions: test_embedder_token_aead.py.)
"""

from __future__ import annotations

import hmac
import io
import zlib

import numpy as np
import pytest

from services.embedder.resume_token import TokenCodec, TokenContents, TokenError


def _contents() -> TokenContents:
    return TokenContents(
        song_id="song-1", model_name="segue-stream", model_version="1.0.0", model_sha256="ab" * 32,
        arrays={"state": np.arange(264, dtype=np.float32), "counters": np.arange(5)},
    )


def test_a_token_decodes_to_exactly_what_was_encoded() -> None:
    codec = TokenCodec(b"key")
    decoded = codec.decode(codec.encode(_contents()))
    assert (decoded.song_id, decoded.model_version, decoded.model_sha256) == (
        "song-1", "1.0.0", "ab" * 32)
    assert np.array_equal(decoded.arrays["state"], np.arange(264, dtype=np.float32))
    assert decoded.arrays["state"].dtype == np.float32


def test_a_token_is_its_arrays_plus_a_small_framing_and_nothing_more() -> None:
    # Float state barely deflates, so it is stored, not compressed: checkpoints stay cheap.
    contents = _contents()
    contents.arrays["noise"] = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    raw = sum(a.nbytes for a in contents.arrays.values())
    token = TokenCodec(b"key").encode(contents)
    assert raw < len(token) < raw + 2_000
    np.testing.assert_array_equal(TokenCodec(b"key").decode(token).arrays["noise"],
                                  contents.arrays["noise"])


def test_a_token_signed_by_another_deployment_is_rejected_as_foreign() -> None:
    token = TokenCodec(b"their key").encode(_contents())
    with pytest.raises(TokenError, match="another deployment"):
        TokenCodec(b"our key").decode(token)


@pytest.mark.parametrize("position", [5, 40, -1])
def test_a_token_with_any_flipped_byte_is_rejected(position: int) -> None:
    token = bytearray(TokenCodec(b"key").encode(_contents()))
    token[position] ^= 0x01
    with pytest.raises(TokenError):
        TokenCodec(b"key").decode(bytes(token))


@pytest.mark.parametrize("token", [b"", b"garbage", b"SGRT\x03" + b"\x00" * 10])
def test_bytes_that_are_not_a_token_are_rejected_as_corrupt(token: bytes) -> None:
    with pytest.raises(TokenError, match="corrupt"):
        TokenCodec(b"key").decode(token)


def _version_1_token(key: bytes, contents: TokenContents) -> bytes:
    """A token exactly as the first release wrote them: zlib(npz) with a `_header` array."""
    header = "\n".join([contents.song_id, contents.model_name, contents.model_version,
                        contents.model_sha256]).encode()
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, _header=np.frombuffer(header, np.uint8),
             **contents.arrays)
    body = zlib.compress(buffer.getvalue(), 6)
    prefix = b"SGRT\x01"
    return prefix + hmac.digest(key, prefix + body, "sha256") + body


def test_a_version_1_token_decodes_while_legacy_tokens_are_accepted() -> None:
    decoded = TokenCodec(b"key", accept_legacy=True).decode(
        _version_1_token(b"key", _contents()))
    assert decoded.song_id == "song-1"
    assert np.array_equal(decoded.arrays["state"], np.arange(264, dtype=np.float32))


def test_byte_arrays_round_trip_exactly_beside_numeric_ones() -> None:
    contents = _contents()
    blob = np.frombuffer(bytes(range(256)) * 3, dtype=np.uint8)
    contents.arrays["structure"] = blob
    contents.arrays["energies"] = np.linspace(0, 1, 7)
    decoded = TokenCodec(b"key").decode(TokenCodec(b"key").encode(contents))
    assert decoded.arrays["structure"].tobytes() == blob.tobytes()
    assert decoded.arrays["energies"].dtype == np.float64
    assert np.array_equal(decoded.arrays["energies"], np.linspace(0, 1, 7))


def test_a_token_of_an_unknown_future_version_is_refused_with_the_versions_read() -> None:
    codec = TokenCodec(b"key")
    payload = codec.encode(_contents())[37:]
    prefix = b"SGRT\x09"
    token = prefix + hmac.digest(b"key", prefix + payload, "sha256") + payload
    with pytest.raises(TokenError, match="version 9 is not supported"):
        codec.decode(token)


@pytest.mark.parametrize("cut", [1, 10, 100])
def test_a_correctly_sealed_but_truncated_payload_is_refused_as_corrupt(cut: int) -> None:
    codec = TokenCodec(b"key")
    token = codec.seal(codec.payload(_contents())[:-cut])
    with pytest.raises(TokenError, match="corrupt"):
        codec.decode(token)
