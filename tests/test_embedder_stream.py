"""Analyze streams over real gRPC: results independent of chunking, streaming, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Song, ThreadServer, decode_song, make_embedder_server

from segue.audio import mono_to_pcm
from segue.client.embedder import AnalyzeResult, EmbedderClient, f32_mono_format
from segue.embedding.local import analyze_mono
from segue.embedding.model import StreamModel
from segue.v1 import common_pb2

TOLERANCE = 1e-5


def assert_same_analysis(a: common_pb2.SongAnalysis, b: common_pb2.SongAnalysis) -> None:
    assert a.song_id == b.song_id
    assert a.duration_s == pytest.approx(b.duration_s, abs=1e-9)
    np.testing.assert_allclose(a.feel, b.feel, atol=TOLERANCE)
    assert a.loudness_lufs == pytest.approx(b.loudness_lufs, abs=TOLERANCE)
    assert len(a.segments) == len(b.segments)
    for x, y in zip(a.segments, b.segments, strict=True):
        assert (x.index, x.start_s, x.end_s, x.section_letter) == (
            y.index, y.start_s, y.end_s, y.section_letter)
        np.testing.assert_allclose(x.entry, y.entry, atol=TOLERANCE)
        np.testing.assert_allclose(x.exit, y.exit, atol=TOLERANCE)
        assert x.energy == pytest.approx(y.energy, abs=TOLERANCE)
    assert a.tempo.bpm == pytest.approx(b.tempo.bpm, abs=TOLERANCE)
    assert [t.time_s for t in a.beats] == pytest.approx([t.time_s for t in b.beats], abs=1e-6)
    assert a.key == b.key
    assert [s.letter for s in a.sections] == [s.letter for s in b.sections]
    assert len(a.cue_points) == len(b.cue_points)


def random_chunks(audio: np.ndarray, seed: int, largest: int = 40_000) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < audio.size:
        n = int(rng.integers(1, largest))
        out.append(mono_to_pcm(audio[i : i + n], common_pb2.SAMPLE_FORMAT_F32LE))
        i += n
    return out


async def _analyze(address: str, song_id: str, rate: int, chunks: list[bytes],
                   **kwargs: object) -> AnalyzeResult:
    async with EmbedderClient(address) as client:
        return await client.analyze_pcm(song_id, f32_mono_format(rate), chunks, **kwargs)  # type: ignore[arg-type]


def test_random_chunk_sizes_give_the_offline_analysis(
    embedder_server: ThreadServer, stream_model: StreamModel, song_48k: Song,
) -> None:
    offline = analyze_mono(stream_model, song_48k.audio, 48000, "song")
    streamed = asyncio.run(_analyze(embedder_server.address, "song", 48000,
                                    random_chunks(song_48k.audio, seed=11)))
    assert streamed.analysis.tempo.bpm > 0, "the structure fields are filled"
    assert_same_analysis(streamed.analysis, offline)


def test_every_window_is_streamed_once_in_order_with_its_times(
    embedder_server: ThreadServer, song_22k: Song,
) -> None:
    audio = song_22k.audio[: 22050 * 7 + 3000]
    result = asyncio.run(_analyze(embedder_server.address, "w", 22050,
                                  random_chunks(audio, seed=3, largest=9000)))
    assert [w.index for w in result.windows] == list(range(8))
    assert [w.start_s for w in result.windows] == [float(i) for i in range(8)]
    assert result.windows[-1].end_s == pytest.approx(audio.size / 22050)
    assert all(len(w.embedding) == 64 and len(w.entry) == 64 for w in result.windows)


def test_windows_are_not_sent_when_the_client_opts_out(
    embedder_server: ThreadServer, song_22k: Song,
) -> None:
    result = asyncio.run(_analyze(embedder_server.address, "quiet", 22050,
                                  random_chunks(song_22k.audio[: 22050 * 6], seed=4),
                                  stream_windows=False))
    assert result.windows == []
    assert result.analysis.duration_s == pytest.approx(6.0)


@pytest.fixture(scope="module")
def unbudgeted_server(stream_model_path: Path) -> Iterator[ThreadServer]:
    """An embedder with no checkpoint token budget: checkpoints at the interval only (each
    token of a 48 kHz stream carries up to a window of resampled audio, 88 kB, which the
    default budget spaces out; tests/test_embedder_checkpoint_budget.py)."""
    server = make_embedder_server(stream_model_path, checkpoint_bytes_per_s=0.0)
    yield server
    server.stop()


def test_checkpoints_come_every_interval_with_exact_positions(
    unbudgeted_server: ThreadServer, song_48k: Song,
) -> None:
    audio = song_48k.audio[: 48000 * 10]
    chunks = [mono_to_pcm(audio[i : i + 24000], common_pb2.SAMPLE_FORMAT_F32LE)
              for i in range(0, audio.size, 24000)]
    result = asyncio.run(_analyze(unbudgeted_server.address, "cp", 48000, chunks,
                                  checkpoint_interval_s=2.0))
    assert [c.position_frames for c in result.checkpoints] == [96000, 192000, 288000, 384000,
                                                               480000]
    assert [c.position_s for c in result.checkpoints] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert all(c.resume_token for c in result.checkpoints)


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_analysis(
    embedder_server: ThreadServer, song_48k: Song,
) -> None:
    audio = song_48k.audio
    chunks = random_chunks(audio, seed=5)
    full = asyncio.run(_analyze(embedder_server.address, "r", 48000, chunks))
    checkpoint = full.checkpoints[2]
    rest = audio[checkpoint.position_frames :]
    resumed = asyncio.run(_analyze(embedder_server.address, "r", 48000,
                                   random_chunks(rest, seed=6),
                                   resume_token=checkpoint.resume_token))
    assert_same_analysis(resumed.analysis, full.analysis)
    assert resumed.windows[0].index == full.windows[-len(resumed.windows)].index


@pytest.mark.slow
def test_thirty_two_concurrent_streams_all_finish_correctly(
    embedder_server: ThreadServer, stream_model: StreamModel, music_tracks: list,  # type: ignore[type-arg]
) -> None:
    songs = [decode_song(music_tracks[i % len(music_tracks)], 22050) for i in range(32)]
    clips = [s.audio[: 22050 * 8] for s in songs]
    expected = [analyze_mono(stream_model, c, 22050, f"song-{i}") for i, c in enumerate(clips)]

    async def run_all() -> list[AnalyzeResult]:
        async with EmbedderClient(embedder_server.address) as client:
            return await asyncio.gather(*(
                client.analyze_pcm(f"song-{i}", f32_mono_format(22050),
                                   random_chunks(c, seed=i, largest=30_000))
                for i, c in enumerate(clips)
            ))

    results = asyncio.run(run_all())
    for result, want in zip(results, expected, strict=True):
        assert_same_analysis(result.analysis, want)


def test_stereo_s16_audio_is_averaged_to_mono(embedder_server: ThreadServer,
                                              stream_model: StreamModel, song_22k: Song) -> None:
    mono = song_22k.audio[: 22050 * 6]
    ints = np.clip(np.round(mono * 32768), -32768, 32767).astype("<i2")
    stereo = np.repeat(ints, 2).tobytes()
    fmt = common_pb2.AudioFormat(sample_rate_hz=22050, channels=2,
                                 sample_format=common_pb2.SAMPLE_FORMAT_S16LE)

    async def run() -> AnalyzeResult:
        async with EmbedderClient(embedder_server.address) as client:
            return await client.analyze_pcm("st", fmt, [stereo[i : i + 40_000]
                                                        for i in range(0, len(stereo), 40_000)])

    result = asyncio.run(run())
    expected = analyze_mono(stream_model, ints.astype(np.float32) / np.float32(32768), 22050,
                            "st")
    assert_same_analysis(result.analysis, expected)


def test_model_info_describes_the_served_model(embedder_server: ThreadServer,
                                               stream_model: StreamModel) -> None:
    async def run() -> object:
        async with EmbedderClient(embedder_server.address) as client:
            return await client.model_info()

    info = asyncio.run(run())
    spec = stream_model.spec
    assert (info.name, info.version, info.sha256) == (spec.name, spec.version, spec.sha256)  # type: ignore[attr-defined]
    assert info.native_sample_rate_hz == spec.sample_rate_hz  # type: ignore[attr-defined]
    assert info.window_s == pytest.approx(spec.window_s)  # type: ignore[attr-defined]
    assert info.execution_provider == "CPUExecutionProvider"  # type: ignore[attr-defined]
    assert info.max_chunk_bytes == 512 * 1024  # type: ignore[attr-defined]


def test_embed_clip_equals_the_streamed_feel_of_the_same_clip(
    embedder_server: ThreadServer, stream_model: StreamModel, song_48k: Song,
) -> None:
    clip = song_48k.audio[: 48000 * 4]

    async def run() -> object:
        async with EmbedderClient(embedder_server.address) as client:
            return await client.embed_clip(mono_to_pcm(clip, common_pb2.SAMPLE_FORMAT_F32LE),
                                           f32_mono_format(48000))

    response = asyncio.run(run())
    offline = analyze_mono(stream_model, clip, 48000, "clip")
    np.testing.assert_allclose(response.feel, offline.feel, atol=TOLERANCE)  # type: ignore[attr-defined]
    assert [w.index for w in response.windows] == [0, 1, 2, 3]  # type: ignore[attr-defined]
    assert response.duration_s == pytest.approx(4.0)  # type: ignore[attr-defined]
