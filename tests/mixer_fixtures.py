"""Test material and an in-process mixer server for the mixer tests."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from thread_server import ThreadServer

from devkit.synth import SynthSong, generate_song
from segue.v1 import common_pb2

RATE = 44100
FloatArray = npt.NDArray[np.float32]


@lru_cache(maxsize=8)
def song(seed: int, tempo_bpm: float, duration_s: float = 24.0) -> SynthSong:
    """A generated electronic song with known beats, at the mixer's default rate."""
    return generate_song(
        seed,
        duration_s=duration_s,
        tempo_bpm=tempo_bpm,
        instrumentation="electronic",
        sample_rate_hz=RATE,
    )


def analysis_of(s: SynthSong) -> common_pb2.SongAnalysis:
    """The analysis a client would send: the song's true beats, tempo and key."""
    analysis = common_pb2.SongAnalysis(song_id=f"synth-{s.seed}", duration_s=s.audio.size / RATE)
    analysis.tempo.bpm = s.tempo_bpm
    analysis.tempo.confidence = 0.95
    analysis.tempo.stability = 1.0
    for t, p in zip(s.beat_times_s, s.beat_positions, strict=True):
        analysis.beats.add(time_s=float(t), position_in_bar=int(p))
    analysis.key.tonic_pitch_class = s.key_tonic
    analysis.key.mode = common_pb2.MODE_MAJOR if s.key_mode == "major" else common_pb2.MODE_MINOR
    return analysis


def click_track(
    tempo_bpm: float, duration_s: float, tone_hz: float, first_beat_s: float = 0.2
) -> tuple[FloatArray, npt.NDArray[np.float64]]:
    """Short tone bursts on every beat (mono) and the exact beat times."""
    beats = np.arange(first_beat_s, duration_s - 0.1, 60.0 / tempo_bpm)
    audio = np.zeros(int(duration_s * RATE), dtype=np.float32)
    n = int(0.03 * RATE)
    k = np.arange(n)
    decay = np.exp(-k / (0.006 * RATE))
    burst = (np.sin(2 * np.pi * tone_hz * k / RATE) * decay).astype(np.float32)
    for t in beats:
        i = round(t * RATE)
        audio[i : i + n] += 0.5 * burst
    return audio, beats


def click_analysis(beats: npt.NDArray[np.float64], tempo_bpm: float) -> common_pb2.SongAnalysis:
    analysis = common_pb2.SongAnalysis()
    analysis.tempo.bpm = tempo_bpm
    analysis.tempo.confidence = 1.0
    analysis.tempo.stability = 1.0
    for i, t in enumerate(beats):
        analysis.beats.add(time_s=float(t), position_in_bar=i % 4 + 1)
    return analysis


class MixerThreadServer(ThreadServer[Any]):
    """A mixer with MixerConfig overrides, served in a daemon thread for synchronous tests."""

    def __init__(self, **overrides: object) -> None:
        from services.mixer.__main__ import registrar
        from services.mixer.config import MixerConfig
        from services.mixer.servicer import MixerServicer

        super().__init__(
            "mixer", lambda: MixerServicer(MixerConfig(**overrides)),  # type: ignore[arg-type]
            registrar, on_shutdown=lambda s: [s.close], grace_s=2.0,
            max_message_bytes=16 * 1024 * 1024,
        )
