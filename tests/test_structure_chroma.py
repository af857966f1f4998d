"""Chroma from the spectral peaks of decimated excerpts: the pitch classes a full-length FFT
gives, far cheaper, and partials off the pitch grid count little."""

import numpy as np
import scipy.fft

from devkit.synth import generate_song
from segue.structure.chroma import (
    ChromaExtractor,
    column_pitches,
    peak_pitch_classes,
    tuning_offsets,
)

SR = 22050


def _tone(hz: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(SR) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_a_tone_lands_in_its_pitch_class() -> None:
    chroma = ChromaExtractor(SR)(_tone(220.0))  # A3
    assert chroma.shape == (4, 13)
    assert np.all(np.argmax(chroma[:, :12], axis=1) == 9)  # A
    assert np.allclose(chroma[:, 12], 20 * np.log10(0.3 / np.sqrt(2)), atol=0.05)


def test_a_tone_between_two_bins_keeps_its_amplitude() -> None:
    # A tone half way between FFT bins reads the amplitude of one on a bin (within 5%; the
    # nearest bin alone loses 15% to the Hann window). Alone, each tone sets the tuning.
    extractor = ChromaExtractor(SR)
    reads = [
        np.sqrt(10 ** extractor(_tone(bins * extractor.bin_hz))[:, :12].max(axis=1))
        for bins in (41, 41.5)
    ]
    assert np.allclose(reads[1] / reads[0], 1.0, atol=0.05)


def test_a_partial_a_quarter_tone_off_the_others_counts_little() -> None:
    extractor = ChromaExtractor(SR)
    a, e, off = 440.0, 440.0 * 2 ** (7 / 12), 440.0 * 2 ** (3.5 / 12)  # A, E, C a quarter sharp
    chroma = 10 ** extractor(_tone(a, 0.2) + _tone(e, 0.2) + _tone(off, 0.2))[:, :12]
    # The in-tune pair sets the grid; cos² of half a semitone is 0, so C and C# get little.
    assert np.all(chroma[:, [0, 1]].max(axis=1) < 0.01 * chroma[:, [9, 4]].min(axis=1))


def test_peaks_are_read_from_local_maxima_only() -> None:
    bin_hz = SR / 2048
    magnitude = np.array([[1e-3, 1.0, 4.0, 1.0, 0.5, 0.5, 1e-3]], np.float32)
    slots, weights = peak_pitch_classes(np.log(magnitude), *column_pitches(40, 5, bin_hz), 1)
    # Bin 41 (column 2, 441 Hz) is the only bin above both neighbours; the plateau is not a
    # peak. Its neighbours are equal, so it is not shifted and keeps its own amplitude; alone,
    # it sets the tuning, so it sits on the grid.
    assert slots.tolist() == [9]  # frame 0, pitch class A
    assert np.isclose(weights[0], 4.0, rtol=1e-4)


def test_the_outer_columns_are_neighbours_only() -> None:
    magnitude = np.array([[4.0, 1.0, 0.5, 1.0, 4.0], [4.0, 1.0, 0.5, 1.0, 4.0]], np.float32)
    _, weights = peak_pitch_classes(np.log(magnitude), *column_pitches(41, 3, SR / 2048), 1)
    assert np.all(weights == 0.0)


def test_digital_silence_keeps_the_chroma_finite() -> None:
    t = np.arange(SR) / SR
    tone_in_silence = np.where(t < 0.5, 0.0, np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    for pcm in (np.zeros(SR, np.float32), tone_in_silence):
        assert np.all(np.isfinite(ChromaExtractor(SR)(pcm)))


def test_decimated_chroma_matches_the_full_length_fft() -> None:
    audio = generate_song(71, duration_s=24, instrumentation="band").audio[: 16 * SR]
    windows = audio.reshape(16, SR)
    extractor = ChromaExtractor(SR)
    ours = 10 ** extractor(windows)[:, :12]
    # The reference: each frame's centred n_fft samples, Hann window, full-length FFT peaks.
    n_fft, step = extractor.n_fft, SR // 4
    offset = (step - n_fft) // 2
    parts = windows[:, : 4 * step].reshape(-1, step)[:, offset : offset + n_fft]
    spectrum = np.abs(scipy.fft.rfft(parts * np.hanning(n_fft + 1)[:-1], axis=1))
    first, n = extractor.first_bin, extractor.n_bins
    columns = np.log(spectrum[:, first - 1 : first + n + 1] + 1e-20).astype(np.float32)
    slots, weights = peak_pitch_classes(columns, *column_pitches(first, n, SR / n_fft), 4)
    reference = np.bincount(slots, weights, minlength=len(parts) * 12).reshape(-1, 12) ** 2
    audible = reference.sum(axis=1) > 1e-3 * reference.sum(axis=1).max()
    a, b = np.sqrt(ours[audible]), np.sqrt(reference[audible])
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cosine) > 0.999
    assert cosine.min() > 0.98


def test_each_window_reads_its_own_tuning_offset_as_the_circular_mean_of_its_peaks() -> None:
    rng = np.random.default_rng(5)
    # Window 0: partials a third of a semitone sharp (pitches 40-80), and as many weaker noise
    # peaks anywhere, whose offsets cancel. Window 1: 0.4 flat, which reads -0.4, not +0.6.
    sharp = rng.integers(40, 80, 300) + 0.33
    noise = rng.uniform(40, 80, 300)
    flat = rng.integers(40, 80, 300) - 0.4
    semitone = np.r_[sharp, noise, flat].astype(np.float32)
    amplitude = np.r_[np.ones(300), 0.5 * np.ones(300), np.ones(300)].astype(np.float32)
    windows = np.repeat([0, 1], [600, 300])
    offsets = tuning_offsets(windows, semitone, amplitude)
    assert np.all(np.abs(offsets[:600] - 0.33) < 0.03)
    assert np.allclose(offsets[600:], -0.4, atol=1e-3)


def test_a_window_reads_the_same_chroma_whatever_windows_it_is_folded_with() -> None:
    audio = generate_song(72, duration_s=8, instrumentation="band").audio[: 8 * SR]
    windows = audio.reshape(8, SR)
    extractor = ChromaExtractor(SR)
    together = extractor(windows)
    one_by_one = np.concatenate([extractor(w) for w in windows])
    assert np.array_equal(together, one_by_one)
