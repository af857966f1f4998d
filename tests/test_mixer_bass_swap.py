"""The EQ bass swap: a flat crossover, and a bass that changes hands over two bars on the
downbeat where the mix changes sound least."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from mixer_fixtures import RATE, click_analysis, click_track
from scipy.signal import butter, sosfiltfilt

from segue.mixing.bass_swap import SWAP_BARS
from segue.mixing.eq import BASS_CUTOFF_HZ, low_band_weight, low_pass, split_bass
from segue.mixing.excerpt import Excerpt
from segue.mixing.render import Rendered, render_transition
from segue.mixing.style import Params, Style
from segue.v1 import mixer_pb2

TEMPO = 120.0
BAR_S = 4 * 60.0 / TEMPO
A_BASS_HZ, B_BASS_HZ = 55.0, 82.5
FRAME_S = 0.05
SONG_S = 30.0
# A bass line: (frequency, from, until) in the song's own seconds.
Note = tuple[float, float, float]


def tone(freq_hz: float, duration_s: float, from_s: float = 0.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(duration_s * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq_hz * t) * (t >= from_s)).astype(np.float32)


def song_with_bass(click_hz: float, notes: list[Note]) -> tuple[Excerpt, npt.NDArray[np.float64]]:
    """Bass notes under clicks on every beat, at TEMPO, with its true beats as the analysis."""
    clicks, beats = click_track(TEMPO, SONG_S, click_hz, first_beat_s=0.25)
    t = np.arange(clicks.size) / RATE
    mono = clicks.copy()
    for freq, start, until in notes:
        mono += (0.3 * np.sin(2 * np.pi * freq * t) * ((t >= start) & (t < until))).astype(
            np.float32
        )
    info = mixer_pb2.ExcerptInfo(encoded=True)
    info.analysis.CopyFrom(click_analysis(beats, TEMPO))
    return Excerpt("song", np.stack([mono, mono]), RATE, info), beats


def bass_envelope(audio: npt.NDArray[np.float32], freq_hz: float) -> npt.NDArray[np.float64]:
    """RMS of the band around freq_hz in FRAME_S frames."""
    sos = butter(4, [freq_hz * 0.9, freq_hz * 1.1], "bandpass", fs=RATE, output="sos")
    band = sosfiltfilt(sos, audio.mean(axis=0).astype(np.float64))
    per = int(FRAME_S * RATE)
    frames = band.size // per
    out: npt.NDArray[np.float64] = np.sqrt(
        np.mean(band[: frames * per].reshape(frames, per) ** 2, axis=1)
    )
    return out


def basses(rendered: Rendered) -> tuple[npt.NDArray[np.float64], ...]:
    """Frame times, A's and B's bass relative to where each plays alone."""
    env_a = bass_envelope(rendered.audio, A_BASS_HZ)
    env_b = bass_envelope(rendered.audio, B_BASS_HZ)
    t = (np.arange(env_a.size, dtype=np.float64) + 0.5) * FRAME_S
    alone_a = (t > 0.3) & (t < rendered.overlap_start_s - 0.1)
    alone_b = (t > rendered.overlap_end_s + 0.1) & (t < t[-1] - 0.3)
    return t, env_a / float(np.median(env_a[alone_a])), env_b / float(np.median(env_b[alone_b]))


def render_swap(a_notes: list[Note] | None = None, b_notes: list[Note] | None = None) -> Rendered:
    """8 bars from A (bass at 55 Hz) to B (82.5 Hz): steady bass lines unless given."""
    a, _ = song_with_bass(1000.0, a_notes or [(A_BASS_HZ, 0.0, SONG_S)])
    b, _ = song_with_bass(5000.0, b_notes or [(B_BASS_HZ, 0.0, SONG_S)])
    return render_transition(
        a,
        b,
        Style("bars", bars=8, eq_bass_swap=True),
        Params(target_lufs=-20.0, context_s=2.0),
    )


def crossing_s(rendered: Rendered) -> float:
    """Where A's and B's bass are equally loud inside the overlap (the swap downbeat)."""
    t, bass_a, bass_b = basses(rendered)
    inside = (t > rendered.overlap_start_s) & (t < rendered.overlap_end_s)
    return float(t[inside][np.argmin(np.abs(bass_a[inside] - bass_b[inside]))])


def test_the_crossover_bands_sum_exactly_to_the_input_and_split_at_the_cutoff() -> None:
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((2, 4 * RATE)).astype(np.float32)
    low, high = split_bass(noise, RATE)
    assert np.allclose(low + high, noise, atol=1e-5)
    # Zero-phase: a tone well below the cutoff passes whole and in phase, one above does not.
    deep, bright = tone(40.0, 4.0)[None, :], tone(1000.0, 4.0)[None, :]
    middle = slice(RATE, 3 * RATE)
    assert np.allclose(low_pass(deep, RATE)[:, middle], deep[:, middle], atol=0.01 * 0.3)
    assert np.abs(low_pass(bright, RATE)[:, middle]).max() < 0.003 * 0.3
    at_cutoff = tone(BASS_CUTOFF_HZ, 4.0)[None, :]
    gain = np.abs(low_pass(at_cutoff, RATE)[:, middle]).max() / 0.3
    assert gain == pytest.approx(0.5, abs=0.02)  # -6 dB, the two bands cross in phase


@pytest.mark.parametrize("freq_hz", [50.0, 120.0, 150.0, 220.0, 400.0])
def test_the_swap_placements_model_of_the_crossover_is_the_crossover(freq_hz: float) -> None:
    # The swap is placed by predicting the mix's spectrum through the crossover's weights.
    sine = tone(freq_hz, 4.0)[None, :]
    middle = slice(RATE, 3 * RATE)
    measured = np.abs(low_pass(sine, RATE)[:, middle]).max() / 0.3
    assert float(low_band_weight(np.array([freq_hz]))[0]) == pytest.approx(measured, abs=0.01)


def test_with_nothing_to_choose_between_the_bass_changes_hands_on_the_middle_downbeat() -> None:
    rendered = render_swap()
    t, bass_a, bass_b = basses(rendered)
    ov0, ov1 = rendered.overlap_start_s, rendered.overlap_end_s
    inside = (t > ov0) & (t < ov1)
    crossing = crossing_s(rendered)
    assert crossing == pytest.approx(ov0 + 4 * BAR_S, abs=0.06)
    # From 90% to 10% of A's bass takes about half the two-bar ramp (smoothstep), not a beat.
    falling = t[(bass_a < 0.9) & (bass_a > 0.1) & inside]
    assert 0.4 * SWAP_BARS * BAR_S <= falling[-1] - falling[0] <= 0.6 * SWAP_BARS * BAR_S
    # Before the ramp A's bass holds, after it B's; no frame jumps.
    half_ramp = 0.5 * SWAP_BARS * BAR_S
    assert np.all(bass_a[(t > ov0) & (t < crossing - half_ramp)] > 0.9)
    assert np.all(bass_b[(t > crossing + half_ramp) & (t < ov1)] > 0.9)
    assert np.abs(np.diff(bass_a[inside])).max() < 0.1
    assert (
        "bass swapped over 2 bars on the downbeat 4 bars into the 8-bar overlap"
        in rendered.report.length_reason
    )


def test_the_two_kick_drums_are_never_both_near_full_level_for_long() -> None:
    rendered = render_swap()
    _, bass_a, bass_b = basses(rendered)
    both = (bass_a > 0.5) & (bass_b > 0.5)  # each within 6 dB of its own level
    assert np.count_nonzero(both) * FRAME_S <= 0.6 * BAR_S


def test_the_summed_bass_power_stays_level_through_the_swap() -> None:
    rendered = render_swap()
    t, bass_a, bass_b = basses(rendered)
    inside = (t > rendered.overlap_start_s) & (t < rendered.overlap_end_s)
    power_db = 10 * np.log10(bass_a[inside] ** 2 + bass_b[inside] ** 2)
    assert np.abs(power_db).max() < 1.5


def test_the_swap_waits_for_the_incoming_bass_line() -> None:
    # B's bass enters 5 bars into the overlap: a swap before that would play its entry at
    # full level, so the bass changes hands on or after it.
    _, b_beats = song_with_bass(5000.0, [])
    entry_in_b = float(b_beats[0]) + 5 * BAR_S  # B's overlap starts on its first downbeat
    rendered = render_swap(b_notes=[(B_BASS_HZ, entry_in_b, SONG_S)])
    t, bass_a, _ = basses(rendered)
    entry = rendered.overlap_start_s + 5 * BAR_S  # B plays at its own tempo
    inside = (t > rendered.overlap_start_s) & (t < rendered.overlap_end_s)
    assert t[inside & (bass_a < 0.5)][0] >= entry - 0.06


def test_the_swap_is_done_before_the_outgoing_bass_line_stops() -> None:
    # A's bass stops 3 bars into the overlap: the incoming bass must be in by then, or the
    # mix would lose its bass there.
    steady = render_swap()
    a_overlap_start = steady.a_origin_s + steady.overlap_start_s
    rendered = render_swap(a_notes=[(A_BASS_HZ, 0.0, a_overlap_start + 3 * BAR_S)])
    t, _, bass_b = basses(rendered)
    stop = rendered.overlap_start_s + 3 * BAR_S
    assert crossing_s(rendered) <= stop - BAR_S + 0.06
    after = (t > stop) & (t < rendered.overlap_end_s)
    assert np.all(bass_b[after] > 0.9)


def test_a_new_note_of_the_incoming_bass_is_not_heard_on_its_own_after_the_swap() -> None:
    # B's bass line moves from 82.5 to 110 Hz 6 bars into the overlap, where A's is steady: a
    # swap on the middle downbeat would leave B's bass alone for that change; later, A's
    # bass is still there when it happens.
    _, b_beats = song_with_bass(5000.0, [])
    change_in_b = float(b_beats[0]) + 6 * BAR_S
    rendered = render_swap(b_notes=[(B_BASS_HZ, 0.0, change_in_b), (110.0, change_in_b, SONG_S)])
    t, bass_a, _ = basses(rendered)
    change = rendered.overlap_start_s + 6 * BAR_S
    assert crossing_s(rendered) >= change - 0.06
    assert float(np.interp(change, t, bass_a)) > 0.5
