"""The decoder benchmark compares like with like: each decoder yields the engine's 22050 Hz
mono audio, and its agreement figures measure what they name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.bench_decoders import DECODERS, agreement

RATE = 44100


@pytest.fixture
def stereo_wav(tmp_path: Path) -> Path:
    """2 s of a 440 Hz tone at half scale in both channels, 44.1 kHz float WAV."""
    soundfile = pytest.importorskip("soundfile")
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * RATE) / RATE)
    path = tmp_path / "tone.wav"
    soundfile.write(str(path), np.stack([tone, tone], axis=1), RATE, subtype="FLOAT")
    return path


def test_agreement_reads_correlation_level_and_length() -> None:
    x = np.sin(np.arange(22050) * 0.1).astype(np.float32)
    r, level_db, longer = agreement(x, np.concatenate([0.5 * x, np.zeros(10, np.float32)]))
    assert r == pytest.approx(1.0)
    assert level_db == pytest.approx(-6.02, abs=0.01)
    assert longer == 10


def test_every_decoder_yields_the_engines_rate_and_ffmpegs_downmix_is_3_db_above_the_mean(
    stereo_wav: Path,
) -> None:
    pytest.importorskip("av")
    pytest.importorskip("soxr")
    out = {name: decode(stereo_wav) for name, decode in DECODERS.items()}
    reference = out["ffmpeg pipe (Segue's)"]
    assert reference.size == pytest.approx(2 * 22050, abs=2)
    r, level_db, _ = agreement(reference, out["PyAV in-process"])
    assert r > 0.9999 and abs(level_db) < 0.01  # the same libraries, the same downmix
    r, level_db, _ = agreement(reference, out["soundfile + soxr"])
    assert r > 0.999 and level_db == pytest.approx(-3.01, abs=0.02)  # mean of L and R
