"""The analysis core shared by the server and `segue analyze --local` (no server involved)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from conftest import Song

from segue.embedding.analysis import build_analysis
from segue.embedding.local import analyze_mono, run_windows
from segue.embedding.model import StreamModel
from segue.embedding.stream_state import SongStream, StreamSettings
from segue.resample import resample
from segue.v1 import common_pb2


def _fmt(rate: int) -> common_pb2.AudioFormat:
    return common_pb2.AudioFormat(sample_rate_hz=rate, channels=1,
                                  sample_format=common_pb2.SAMPLE_FORMAT_F32LE)


def _window_by_window(model: StreamModel, stream: SongStream, windows: list) -> list:  # type: ignore[type-arg]
    out = []
    for w in windows:
        result = model.run(w.pcm[None, :], stream.state[None, :])
        stream.commit(w, result)
        out.append(stream.window_embedding(w, result.embedding[0, 0], result.entry[0, 0],
                                           result.exit[0, 0]))
    return out


def test_analysis_reports_the_model_and_the_real_duration(stream_model: StreamModel,
                                                          song_22k: Song) -> None:
    audio = song_22k.audio[: 22050 * 5 + 1234]
    a = analyze_mono(stream_model, audio, 22050, "five-seconds")
    assert a.song_id == "five-seconds"
    assert (a.model_name, a.model_version) == (stream_model.spec.name, stream_model.spec.version)
    assert a.duration_s == pytest.approx(audio.size / 22050)
    assert len(a.feel) == stream_model.spec.feel_dim
    assert np.linalg.norm(a.feel) == pytest.approx(1.0, abs=1e-4)


def test_loudness_matches_pyloudnorm_on_the_same_audio(stream_model: StreamModel,
                                                       song_48k: Song) -> None:
    a = analyze_mono(stream_model, song_48k.audio, 48000, "x")
    reference = pyloudnorm.Meter(22050).integrated_loudness(
        resample(song_48k.audio, 48000, 22050).astype(np.float64))
    assert a.loudness_lufs == pytest.approx(reference, abs=0.05)


def test_segments_take_entry_from_their_first_and_exit_from_their_last_window(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    stream = SongStream(stream_model.spec, "s", _fmt(22050), StreamSettings(segment_s=4.0))
    windows = stream.push(song_22k.audio[: 22050 * 10]) + stream.finish()
    per_window = _window_by_window(stream_model, stream, windows)
    a = build_analysis(stream)
    assert [s.index for s in a.segments] == [0, 1, 2]
    assert [(s.start_s, s.end_s) for s in a.segments] == [(0, 4), (4, 8), (8, 10)]
    for seg, first, last in ((a.segments[0], 0, 3), (a.segments[1], 4, 7), (a.segments[2], 8, 9)):
        np.testing.assert_allclose(seg.entry, per_window[first].entry, atol=1e-6)
        np.testing.assert_allclose(seg.exit, per_window[last].exit, atol=1e-6)
    assert max(s.energy for s in a.segments) == pytest.approx(1.0)
    assert all(0.0 <= s.energy <= 1.0 for s in a.segments)


def test_many_windows_per_model_call_equal_one_window_per_call(stream_model: StreamModel,
                                                                song_22k: Song) -> None:
    audio = song_22k.audio[: 22050 * 12]
    batched = analyze_mono(stream_model, audio, 22050, "s")
    stream = SongStream(stream_model.spec, "s", _fmt(22050))
    _window_by_window(stream_model, stream, stream.push(audio) + stream.finish())
    single = build_analysis(stream)
    np.testing.assert_allclose(batched.feel, single.feel, atol=1e-5)
    for a, b in zip(batched.segments, single.segments, strict=True):
        np.testing.assert_allclose(a.exit, b.exit, atol=1e-5)


def test_a_tail_shorter_than_the_minimum_is_dropped_but_counted_in_the_duration(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    settings = StreamSettings(min_tail_s=0.1)
    short = SongStream(stream_model.spec, "s", _fmt(22050), settings)
    windows = short.push(song_22k.audio[: 22050 * 6 + 1000]) + short.finish()
    assert len(windows) == 6
    run_windows(stream_model, short, windows)
    assert build_analysis(short).duration_s == pytest.approx((22050 * 6 + 1000) / 22050)

    long = SongStream(stream_model.spec, "s", _fmt(22050), settings)
    windows = long.push(song_22k.audio[: 22050 * 6 + 5000]) + long.finish()
    assert len(windows) == 7
    assert windows[-1].valid == 5000 and not windows[-1].pcm[5000:].any()


def test_a_song_shorter_than_one_window_still_gets_one_padded_window(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    stream = SongStream(stream_model.spec, "s", _fmt(22050))
    windows = stream.push(song_22k.audio[:500]) + stream.finish()
    assert [w.valid for w in windows] == [500]


def test_snapshot_and_restore_continue_exactly_like_an_uninterrupted_stream(
    stream_model: StreamModel, song_48k: Song,
) -> None:
    audio = song_48k.audio[: 48000 * 12]
    whole = SongStream(stream_model.spec, "s", _fmt(48000))
    _window_by_window(stream_model, whole, whole.push(audio) + whole.finish())
    expected = build_analysis(whole)

    first = SongStream(stream_model.spec, "s", _fmt(48000))
    _window_by_window(stream_model, first, first.push(audio[:250_001]))
    second = SongStream.restore(stream_model.spec, "s", first.snapshot())
    _window_by_window(stream_model, second, second.push(audio[250_001:]) + second.finish())
    assert build_analysis(second) == expected
