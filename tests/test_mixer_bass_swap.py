"""The EQ bass swap: a flat crossover, and a bass that changes hands smoothly on a downbeat."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from mixer_fixtures import RATE, click_analysis, click_track
from scipy.signal import butter, sosfiltfilt

from segue.v1 import mixer_pb2
from services.mixer.eq import BASS_CUTOFF_HZ, low_pass, split_bass
from services.mixer.excerpt import Excerpt
from services.mixer.render import Params, Rendered, Style, render_transition

TEMPO = 120.0
BAR_S = 4 * 60.0 / TEMPO
A_BASS_HZ, B_BASS_HZ = 55.0, 82.5
FRAME_S = 0.05


def tone(freq_hz: float, duration_s: float, from_s: float = 0.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(duration_s * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq_hz * t) * (t >= from_s)).astype(np.float32)


def song_with_bass(
    bass_hz: float, click_hz: float, bass_from_s: float = 0.0
) -> tuple[Excerpt, npt.NDArray[np.float64]]:
    """A bass tone under clicks on every beat, at TEMPO, with its true beats as the analysis."""
    clicks, beats = click_track(TEMPO, 30.0, click_hz, first_beat_s=0.25)
    mono = clicks + tone(bass_hz, 30.0, bass_from_s)
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


def render_swap(b_bass_from_s: float = 0.0) -> Rendered:
    a, _ = song_with_bass(A_BASS_HZ, 1000.0)
    b, _ = song_with_bass(B_BASS_HZ, 5000.0, b_bass_from_s)
    return render_transition(
        a,
        b,
        Style("bars", bars=8, eq_bass_swap=True),
        Params(target_lufs=-20.0, context_s=2.0),
    )


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


def test_the_bass_changes_hands_on_the_middle_downbeat_over_about_a_bar() -> None:
    rendered = render_swap()
    t, bass_a, bass_b = basses(rendered)
    ov0, ov1 = rendered.overlap_start_s, rendered.overlap_end_s
    inside = (t > ov0) & (t < ov1)
    crossing = float(t[inside][np.argmin(np.abs(bass_a[inside] - bass_b[inside]))])
    assert crossing == pytest.approx(ov0 + 4 * BAR_S, abs=0.06)
    # From 90% to 10% of A's bass takes about half the one-bar ramp (smoothstep), not a beat.
    falling = t[(bass_a < 0.9) & (bass_a > 0.1) & inside]
    assert 0.4 * BAR_S <= falling[-1] - falling[0] <= 1.0 * BAR_S
    # Before the swap A's bass holds, after it B's; no frame jumps.
    assert np.all(bass_a[(t > ov0) & (t < crossing - BAR_S)] > 0.9)
    assert np.all(bass_b[(t > crossing + BAR_S) & (t < ov1)] > 0.9)
    assert np.abs(np.diff(bass_a[inside])).max() < 0.15


def test_the_summed_bass_power_stays_level_through_the_swap() -> None:
    rendered = render_swap()
    t, bass_a, bass_b = basses(rendered)
    inside = (t > rendered.overlap_start_s) & (t < rendered.overlap_end_s)
    power_db = 10 * np.log10(bass_a[inside] ** 2 + bass_b[inside] ** 2)
    assert np.abs(power_db).max() < 1.5


def test_the_swap_waits_for_the_incoming_bass_line() -> None:
    # B's bass enters 5 bars into the overlap: a swap before that would play its entry at
    # full level, so the bass changes hands on or after it.
    _, b_beats = song_with_bass(B_BASS_HZ, 5000.0)
    rendered = render_swap(b_bass_from_s=float(b_beats[0]) + 5 * BAR_S)
    t, bass_a, _ = basses(rendered)
    entry = rendered.overlap_start_s + 5 * BAR_S  # B plays at its own tempo, from a downbeat
    inside = (t > rendered.overlap_start_s) & (t < rendered.overlap_end_s)
    assert t[inside & (bass_a < 0.5)][0] >= entry - 0.06
