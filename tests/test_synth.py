import numpy as np
import pytest

from devkit.synth import INSTRUMENTATIONS, generate_song, parse_key, plan_sections


def test_same_seed_gives_identical_song() -> None:
    a = generate_song(3, duration_s=20)
    b = generate_song(3, duration_s=20)
    assert np.array_equal(a.audio, b.audio)
    assert np.array_equal(a.beat_times_s, b.beat_times_s)


def test_different_seeds_give_different_songs() -> None:
    assert not np.array_equal(generate_song(1, duration_s=20).audio[:40000],
                              generate_song(2, duration_s=20).audio[:40000])  # fmt: skip


def test_requested_tempo_key_and_instrumentation_are_honoured() -> None:
    song = generate_song(5, duration_s=30, tempo_bpm=128, key="F# minor", instrumentation="band")
    assert song.tempo_bpm == 128
    assert (song.key_tonic, song.key_mode) == (6, "minor")
    assert song.camelot == "11A"
    assert song.instrumentation == "band"
    assert np.allclose(np.diff(song.beat_times_s), 60 / 128)


def test_beats_carry_bar_positions_starting_on_a_downbeat() -> None:
    song = generate_song(2, duration_s=20, beats_per_bar=3)
    assert song.beat_positions[0] == 1
    assert set(song.beat_positions) == {1, 2, 3}
    assert len(song.downbeat_times_s) == int(np.sum(song.beat_positions == 1))


def test_duration_is_met_to_within_a_bar() -> None:
    song = generate_song(7, duration_s=45, tempo_bpm=100)
    assert abs(song.duration_s - 45) < 60 / 100 * 4


def test_sections_tile_the_beat_grid_in_pop_form() -> None:
    song = generate_song(4, duration_s=90, tempo_bpm=120)
    functions = [s.function for s in song.sections]
    assert functions[0] == "intro" and functions[-1] == "outro"
    assert "chorus" in functions and "verse" in functions
    for a, b in zip(song.sections[:-1], song.sections[1:], strict=True):
        assert a.end_s == b.start_s
    assert [s.letter for s in song.sections if s.function == "chorus"] == ["C"] * functions.count(
        "chorus"
    )


def test_rubato_varies_beat_periods_and_straight_time_does_not() -> None:
    steady = generate_song(8, duration_s=60, tempo_bpm=110)
    loose = generate_song(8, duration_s=60, tempo_bpm=110, rubato=True)
    assert np.ptp(np.diff(steady.beat_times_s)) < 1e-9
    assert np.ptp(np.diff(loose.beat_times_s)) > 0.05 * 60 / 110


def test_audio_is_finite_mono_float32_below_full_scale() -> None:
    for instrumentation in INSTRUMENTATIONS:
        song = generate_song(1, duration_s=10, instrumentation=instrumentation, swing=0.5)
        assert song.audio.dtype == np.float32 and song.audio.ndim == 1
        assert np.all(np.isfinite(song.audio))
        assert 0.5 < np.max(np.abs(song.audio)) <= 0.9 + 1e-6


def test_a_minute_of_audio_renders_as_a_minute_of_samples_at_the_requested_rate() -> None:
    # How fast it renders (times real time) is measured by bench/bench_synth.py.
    at_22k = generate_song(11, duration_s=60)
    at_44k = generate_song(11, duration_s=60, sample_rate_hz=44100)
    assert abs(at_22k.duration_s - 60) < 60 / at_22k.tempo_bpm * 4
    assert len(at_44k.audio) == 2 * len(at_22k.audio)
    assert np.array_equal(at_44k.beat_times_s, at_22k.beat_times_s)
    assert at_22k.beat_times_s[-1] < at_22k.duration_s


def test_plans_fit_short_and_long_songs() -> None:
    assert sum(bars for _, bars in plan_sections(8)) == 8
    assert sum(bars for _, bars in plan_sections(60)) == 60


@pytest.mark.parametrize("bad", ["H major", "C dorian", "Cmajor"])
def test_malformed_keys_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_key(bad)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        generate_song(1, swing=1.5)
    with pytest.raises(ValueError):
        generate_song(1, beats_per_bar=5)
