"""Tempo, beat and downbeat recovery on generated songs whose grid is known."""

import numpy as np
import pytest
from immich_memories_music import tracks_dir

from devkit.splice import load_mono
from devkit.synth import SynthSong, generate_song
from segue.structure import StructureResult, analyze_audio
from segue.structure.analysis import grid_bpm
from segue.structure.beats import track_beats


def _share_within(estimated: tuple[float, ...], truth: np.ndarray, tolerance_s: float) -> float:
    est = np.asarray(estimated)
    # Ignore the first and last two beats: fades and the lead-in are legitimately ambiguous.
    inner = truth[2:-2]
    return float(np.mean([np.min(np.abs(est - t)) <= tolerance_s for t in inner]))


def _analysed_song(
    seed: int, bpm: float, instrumentation: str, swing: float
) -> tuple[SynthSong, StructureResult]:
    """A generated 40 s song and its structure analysis."""
    song = generate_song(
        seed,
        duration_s=40,
        tempo_bpm=bpm,
        instrumentation=instrumentation,  # type: ignore[arg-type]
        swing=swing,
    )
    return song, analyze_audio(song.audio, song.sample_rate_hz)


@pytest.mark.parametrize(
    ("seed", "bpm", "instrumentation"),
    [(21, 70.0, "electronic"), (22, 160.0, "band"), (23, 124.0, "electronic")],
)
def test_beat_grid_is_recovered_within_20_ms_at_its_own_metrical_level(
    seed: int, bpm: float, instrumentation: str
) -> None:
    song = generate_song(seed, duration_s=40, tempo_bpm=bpm, instrumentation=instrumentation)  # type: ignore[arg-type]
    result = analyze_audio(song.audio, song.sample_rate_hz)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.02)  # not half or double time
    assert _share_within(result.beat_times_s, song.beat_times_s, 0.020) >= 0.95
    assert result.tempo_confidence > 0.5
    assert result.tempo_stability > 0.8


@pytest.mark.parametrize(
    ("seed", "bpm", "instrumentation", "swing"),
    [
        (32, 155.0, "band", 0.6),
        (34, 146.0, "acoustic", 0.3),
        (36, 76.0, "band", 0.6),
        (37, 73.0, "minimal", 0.3),
    ],
)
def test_a_snare_backbeat_between_the_beats_decides_between_half_and_full_time(
    seed: int, bpm: float, instrumentation: str, swing: float
) -> None:
    # Kick and snare alternating at 146-155 BPM also fit a 73-78 BPM grid on the kicks; the
    # snare halfway between those beats (loud, with little bass) marks it as half time.
    _, result = _analysed_song(seed, bpm, instrumentation, swing)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.04)


@pytest.mark.parametrize(
    ("seed", "bpm", "instrumentation", "swing"),
    [(32, 155.0, "band", 0.0), (32, 155.0, "band", 0.6), (34, 146.0, "acoustic", 0.3)],
)
def test_a_fast_song_first_read_at_half_time_gets_its_own_beats_through_a_swung_chorus(
    seed: int, bpm: float, instrumentation: str, swing: float
) -> None:
    # The band's chorus puts open hats and bass notes on the swung off-beats; the grid must
    # stay on kick and snare there too.
    song, result = _analysed_song(seed, bpm, instrumentation, swing)
    assert _share_within(result.beat_times_s, song.beat_times_s, 0.020) >= 0.95


@pytest.mark.parametrize(
    ("swing", "instrumentation"),
    [(0.7, "electronic"), (0.4, "band"), (0.4, "acoustic")],
)
def test_swung_song_keeps_the_quarter_note_beat(swing: float, instrumentation: str) -> None:
    song = generate_song(
        24,
        duration_s=40,
        tempo_bpm=140,
        swing=swing,
        instrumentation=instrumentation,  # type: ignore[arg-type]
    )
    result = analyze_audio(song.audio, song.sample_rate_hz)
    assert result.tempo_bpm == pytest.approx(140, rel=0.02)
    assert _share_within(result.beat_times_s, song.beat_times_s, 0.030) >= 0.9


def test_rubato_passages_are_followed_and_lower_the_stability() -> None:
    song = generate_song(25, duration_s=60, tempo_bpm=100, rubato=True, instrumentation="band")
    result = analyze_audio(song.audio, song.sample_rate_hz)
    assert _share_within(result.beat_times_s, song.beat_times_s, 0.070) >= 0.9
    steady = analyze_audio(
        generate_song(25, duration_s=60, tempo_bpm=100, instrumentation="band").audio, 22050
    )
    assert result.tempo_stability < steady.tempo_stability


def test_downbeats_fall_on_the_first_beat_of_each_bar() -> None:
    song = generate_song(26, duration_s=40, tempo_bpm=118, instrumentation="band")
    result = analyze_audio(song.audio, song.sample_rate_hz)
    assert result.beats_per_bar == 4
    truth = song.downbeat_times_s[1:-1]
    found = np.asarray(result.downbeat_times_s)
    assert np.mean([np.min(np.abs(found - t)) < 0.05 for t in truth]) >= 0.9


@pytest.mark.parametrize(
    "track",
    [
        "energetic/energetic_electronic_2.opus",
        "happy/happy_electronic_s411.opus",
        "tender/tender_acoustic_2.opus",
    ],
)
def test_beats_of_a_real_song_stay_inside_it_without_skipping_any(track: str) -> None:
    # The fade-out of energetic_electronic_2 once got a beat 0.3 s after the song's end, a
    # whole bar after the one before it: weak end beats stepped by the gap between strong ones.
    audio = load_mono(tracks_dir() / track)
    result = analyze_audio(audio, 22050)
    beats = np.asarray(result.beat_times_s)
    assert beats[0] >= 0.0
    assert beats[-1] <= result.duration_s
    intervals = np.diff(beats)
    assert intervals.max() < 1.5 * np.median(intervals)
    assert result.tempo_stability > 0.5


def test_the_reported_tempo_is_not_biased_by_frame_quantised_intervals() -> None:
    # 120 BPM on the 22 ms onset frames: intervals alternate 22 and 23 frames, whose median
    # alone reads 117.4 or 122.7 BPM.
    frame_s = 490 / 22050
    beats = np.round(np.arange(0.5, 60.0, 0.5) / frame_s) * frame_s
    assert abs(60.0 / float(np.median(np.diff(beats))) / 120.0 - 1.0) > 0.015
    assert abs(grid_bpm(beats) / 120.0 - 1.0) < 0.003


def test_a_skipped_beat_does_not_pull_the_reported_tempo() -> None:
    # One missed beat every 12 would put a double interval into most 8-beat spans.
    frame_s = 490 / 22050
    beats = np.round(np.arange(0.5, 60.0, 0.5) / frame_s) * frame_s
    sparse = np.delete(beats, np.arange(6, len(beats), 12))
    assert abs(grid_bpm(sparse) / 120.0 - 1.0) < 0.003


def test_tracking_several_envelopes_in_one_pass_gives_each_its_own_beats() -> None:
    from segue.structure.beats import track_beats_on_each

    fps = 22050 / 490
    rng = np.random.default_rng(4)
    envelopes = []
    for first in (10, 21):  # two grids half a beat apart, on a 22-frame beat
        onset = rng.uniform(0.0, 0.1, 2000).astype(np.float32)
        onset[first::22] += 1.0
        envelopes.append(onset)
    period = np.full(2000, 22.0)
    together = track_beats_on_each(envelopes, period, fps)
    for onset, beats in zip(envelopes, together, strict=True):
        assert np.array_equal(beats, track_beats(onset, period, fps))
    assert abs(float(np.median(together[1][:50] - together[0][:50])) * fps - 11.0) < 0.5


def test_a_strong_off_beat_in_the_last_second_does_not_bend_the_last_beats() -> None:
    # tender_acoustic_s411: an eighth in the song's last second, reached through squeezed
    # intervals, ended the path and drew its last beats 60-160 ms early.
    fps = 22050 / 490
    onset = np.zeros(1000, np.float32)
    grid = np.arange(10, 980, 30)
    onset[grid] = 1.0
    onset[grid[:-1] + 15] = 0.3
    onset[grid[-1] + 15] = 0.9
    beats = track_beats(onset, np.full(len(onset), 30.0), fps) * fps
    assert beats[-1] == pytest.approx(grid[-1], abs=0.5)
    assert np.allclose(beats[-5:], grid[-5:], atol=0.5)
