"""Resume tokens: signed, versioned, compressed; anything else is refused with a reason."""

from __future__ import annotations

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


def test_a_token_is_compressed() -> None:
    contents = _contents()
    contents.arrays["zeros"] = np.zeros(100_000, dtype=np.float32)
    assert len(TokenCodec(b"key").encode(contents)) < 20_000


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


@pytest.mark.parametrize("token", [b"", b"garbage", b"SGRT\x01" + b"\x00" * 10])
def test_bytes_that_are_not_a_token_are_rejected_as_corrupt(token: bytes) -> None:
    with pytest.raises(TokenError, match="corrupt"):
        TokenCodec(b"key").decode(token)
