"""The duration a WAV header declares: read from its fmt and data chunks, past other chunks,
and withheld where the header makes no claim."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from segue.library.wav_header import wav_declared_s

RATE, CHANNELS, WIDTH = 44100, 2, 2  # 16-bit stereo: 176400 bytes per second


def _chunk(name: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return name + struct.pack("<I", size) + body + (b"\0" if len(body) % 2 else b"")


def _wav(path: Path, *chunks: bytes) -> Path:
    fmt = struct.pack("<HHIIHH", 1, CHANNELS, RATE, RATE * CHANNELS * WIDTH, CHANNELS * WIDTH,
                      8 * WIDTH)  # fmt: skip
    body = b"WAVE" + _chunk(b"fmt ", fmt) + b"".join(chunks)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_the_data_chunk_size_over_the_byte_rate_is_the_declared_duration(tmp_path: Path) -> None:
    # 3 s declared, 0.5 s present: a file cut short.
    path = _wav(tmp_path / "cut.wav", _chunk(b"data", bytes(88200), declared=3 * 176400))
    assert wav_declared_s(path) == pytest.approx(3.0)


def test_chunks_before_the_data_are_skipped_with_their_padding(tmp_path: Path) -> None:
    path = _wav(tmp_path / "tagged.wav", _chunk(b"LIST", b"INFOISFT\x05\0\0\0segue"),
                _chunk(b"data", bytes(176400)))  # fmt: skip
    assert wav_declared_s(path) == pytest.approx(1.0)


@pytest.mark.parametrize("declared", [0, 0xFFFFFFFF])
def test_a_streaming_writers_unknown_size_declares_nothing(declared: int, tmp_path: Path) -> None:
    path = _wav(tmp_path / "live.wav", _chunk(b"data", bytes(1000), declared=declared))
    assert wav_declared_s(path) is None


def test_a_file_that_is_not_riff_wave_declares_nothing(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not a wave file")
    assert wav_declared_s(path) is None
    assert wav_declared_s(tmp_path / "absent.wav") is None
