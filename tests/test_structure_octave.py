"""Octave and phase regressions found on the rendered-MIDI tuning pieces, on short synthesised
excerpts: a shuffle read at double time, a grid locked on the swung eighth, a fast
two-beat piece (bass on one beat, chord on the next) read at half time, and a riff on every
third eighth read at two thirds of its tempo."""

import numpy as np
import pytest

from segue.structure import StructureResult, analyze_audio

SR = 22050
DURATION_S = 24.0
CHORD_GAIN = 0.5


def _hit(
    out: np.ndarray, at_s: float, freqs: tuple[float, ...], gain: float, decay_s: float
) -> None:
    """Adds a decaying tone (the sum of `freqs`) starting at `at_s` into `out`."""
    start = int(at_s * SR)
    n = min(int(4 * decay_s * SR), len(out) - start)
    if n <= 0:
        return
    t = np.arange(n) / SR
    tone = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    out[start : start + n] += gain * np.exp(-t / decay_s) * tone


def _noise(out: np.ndarray, at_s: float, gain: float, rng: np.random.Generator) -> None:
    """A short bright click (hi-hat or snare) at `at_s`."""
    start = int(at_s * SR)
    n = min(int(0.04 * SR), len(out) - start)
    if n > 0:
        out[start : start + n] += (
            gain * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.01 * SR))
        )


def _beats(bpm: float) -> np.ndarray:
    return np.arange(0.5, DURATION_S - 0.5, 60.0 / bpm)


def _analyse(audio: np.ndarray) -> StructureResult:
    return analyze_audio(audio.astype(np.float32), SR)


def _on_grid(result: StructureResult, truth: np.ndarray, tolerance_s: float = 0.05) -> float:
    """Share of the true beats (past the first 4 s) with an estimated beat within tolerance."""
    est = np.asarray(result.beat_times_s)
    inner = truth[(truth > 4.0) & (truth < truth[-1] - 1.0)]
    return float(np.mean([np.min(np.abs(est - t)) <= tolerance_s for t in inner]))


def _shuffle(bpm: float, offbeat_gain: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bass and chord on every beat, a bright swung eighth two thirds of the way to the next."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(DURATION_S * SR))
    beats = _beats(bpm)
    period = 60.0 / bpm
    for i, b in enumerate(beats):
        _hit(audio, b, (55.0 * (1 + i % 2 * 0.5),), 0.5, 0.2)
        _hit(audio, b, (262.0, 330.0, 392.0), CHORD_GAIN, 0.15)
        _noise(audio, b + 2.0 * period / 3.0, offbeat_gain, rng)
        _hit(audio, b + 2.0 * period / 3.0, (523.0, 659.0), 0.6 * offbeat_gain, 0.08)
    return audio, beats


@pytest.mark.xfail(
    strict=True,
    reason="the learned beat activation puts the grid on this drumless shuffle's swung eighth "
    "(a noise burst); the real pieces it stands for (03-Sunday-drivers, moo_redfarn, "
    "boogi_marabi_redfarn) are tracked on the beat (models/README.md)",
)
def test_a_slow_shuffle_is_not_doubled_by_its_swung_eighths() -> None:
    # 03-Sunday-drivers (80 BPM): the swung eighth counted as a backbeat doubled it to 160.
    audio, beats = _shuffle(80.0, 0.2, seed=1)
    result = _analyse(audio)
    assert abs(result.tempo_bpm / 80.0 - 1.0) < 0.04
    assert _on_grid(result, beats) > 0.9


@pytest.mark.xfail(
    strict=True,
    reason="the learned beat activation puts the grid on this drumless shuffle's swung eighth "
    "(a noise burst); the real pieces it stands for (03-Sunday-drivers, moo_redfarn, "
    "boogi_marabi_redfarn) are tracked on the beat (models/README.md)",
)
def test_a_grid_on_the_swung_eighth_moves_onto_the_beat() -> None:
    # moo_redfarn, boogi_marabi: a loud swung eighth drew the grid a third of a beat early.
    audio, beats = _shuffle(120.0, 0.6, seed=2)
    result = _analyse(audio)
    assert abs(result.tempo_bpm / 120.0 - 1.0) < 0.04
    assert _on_grid(result, beats) > 0.9


def test_a_fast_two_beat_piece_is_read_at_its_own_tempo() -> None:
    # 16-Midnight-Express2 (210 BPM), 24-needlessly-striking (216): bass on one beat and an
    # equally strong chord on the next were read as 105-108 BPM with eighths.
    rng = np.random.default_rng(3)
    audio = np.zeros(int(DURATION_S * SR))
    beats = _beats(210.0)
    for i, b in enumerate(beats):
        if i % 2 == 0:
            _hit(audio, b, (49.0, 98.0), 0.5, 0.12)
            _noise(audio, b, 0.2, rng)
        else:
            _hit(audio, b, (392.0, 494.0, 587.0), 0.5, 0.1)
            _noise(audio, b, 0.3, rng)
    result = _analyse(audio)
    assert abs(result.tempo_bpm / 210.0 - 1.0) < 0.04
    assert _on_grid(result, beats) > 0.9


def _offbeat_break(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """40 s at 120 BPM: bass and a click on every beat, and from 14 s to 26 s a loud bright
    chord on every off-beat (a ska "chuck") over a quieter beat."""
    rng = np.random.default_rng(seed)
    duration_s = 40.0
    audio = np.zeros(int(duration_s * SR))
    beats = np.arange(0.5, duration_s - 0.5, 0.5)
    for i, b in enumerate(beats):
        in_break = 14.0 <= b < 26.0
        _hit(audio, b, (55.0 * (1 + i % 2 * 0.5),), 0.5, 0.15)
        _noise(audio, b, 0.1 if in_break else 0.4, rng)
        _hit(audio, b, (262.0, 330.0, 392.0), 0.1 if in_break else 0.4, 0.1)
        if in_break:
            _noise(audio, b + 0.25, 0.6, rng)
            _hit(audio, b + 0.25, (523.0, 659.0, 784.0), 0.6, 0.06)
    return audio, beats


def test_a_grid_that_slides_onto_the_off_beats_of_a_break_comes_back_on_phase() -> None:
    # ultimate_run, 48-Techno-movement, 41-Libertador: the grid slid half a beat over three
    # beats into a section with loud off-beats and back after it, a third of the piece lost.
    audio, beats = _offbeat_break(seed=4)
    result = _analyse(audio)
    assert abs(result.tempo_bpm / 120.0 - 1.0) < 0.04
    assert _on_grid(result, beats) > 0.9


def _dotted_riff(bpm: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """30 s of eighths at `bpm`: a power chord with a click on every third eighth (the
    dotted-quarter figure, 3+3+3+3+3+1 over two bars, accented where it restarts), a higher
    chord on the eighth after it, a hi-hat click on the rest; the root changes every two
    bars."""
    rng = np.random.default_rng(seed)
    duration_s = 30.0
    audio = np.zeros(int(duration_s * SR))
    eighth = 30.0 / bpm
    roots = (55.0, 65.4, 73.4, 49.0)
    count = int((duration_s - 1.0) / eighth)
    for k in range(count):
        at, pos, root = 0.5 + k * eighth, k % 16, roots[(k // 16) % 4]
        if pos == 15 or pos % 3 == 2:
            _noise(audio, at, 0.3, rng)
        elif pos % 3 == 0:
            _hit(audio, at, (root, root * 1.5), 0.7 if pos == 0 else 0.5, 0.12)
            _noise(audio, at, 0.3, rng)
        else:
            _hit(audio, at, (root * 2, root * 3), 0.3, 0.08)
    return audio, 0.5 + np.arange(0, count, 2) * eighth


def test_a_riff_on_every_third_eighth_is_read_at_its_beat() -> None:
    # freedm in_cit and doom (160 and 212 BPM), openmsx run_for_your_life (170): the figure
    # repeating every three eighths made the dotted quarter the strongest period (2/3 of the
    # tempo); only the beat divides the two-bar period the piece repeats at.
    audio, beats = _dotted_riff(160.0, seed=5)
    result = _analyse(audio)
    assert abs(result.tempo_bpm / 160.0 - 1.0) < 0.04
    assert _on_grid(result, beats) > 0.9
