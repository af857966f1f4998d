"""Chroma from the spectral peaks of decimated excerpts: the pitch classes a full-length FFT
gives, far cheaper, and partials off the pitch grid count little."""

import numpy as np
import scipy.fft

from devkit.synth import generate_song
from segue.structure.chroma import ChromaExtractor, column_pitches, peak_pitch_classes

SR = 22050


def _tone(hz: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(SR) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _semitones_off_grid(hz: float) -> float:
    semitone = 69 + 12 * np.log2(hz / 440.0)
    return float(semitone - np.round(semitone))


def test_a_tone_lands_in_its_pitch_class() -> None:
    chroma = ChromaExtractor(SR)(_tone(220.0))  # A3
    assert chroma.shape == (4, 13)
    assert np.all(np.argmax(chroma[:, :12], axis=1) == 9)  # A
    assert np.allclose(chroma[:, 12], 20 * np.log10(0.3 / np.sqrt(2)), atol=0.05)


def test_a_tone_between_two_bins_keeps_its_amplitude() -> None:
    # A tone half way between FFT bins reads the amplitude of one on a bin (within 5%; the
    # nearest bin alone loses 15% to the Hann window), once the pitch weight (cos² of the
    # distance from the pitch grid) is taken out.
    extractor = ChromaExtractor(SR)
    reads = []
    for hz in (41 * extractor.bin_hz, 41.5 * extractor.bin_hz):
        peak = np.sqrt(10 ** extractor(_tone(hz))[:, :12].max(axis=1))
        reads.append(peak / np.cos(np.pi * _semitones_off_grid(hz)) ** 2)
    assert np.allclose(reads[1] / reads[0], 1.0, atol=0.05)


def test_a_partial_a_quarter_tone_off_the_grid_counts_little() -> None:
    extractor = ChromaExtractor(SR)
    in_tune = 10 ** extractor(_tone(440.0))[:, :12].max(axis=1)
    quarter_tone = 10 ** extractor(_tone(440.0 * 2 ** (0.5 / 12)))[:, :12].max(axis=1)
    # cos² of half a semitone is 0: both neighbours get (almost) nothing.
    assert np.all(quarter_tone < 0.01 * in_tune)


def test_peaks_are_read_from_local_maxima_only() -> None:
    bin_hz = SR / 2048
    magnitude = np.array([[1e-3, 1.0, 4.0, 1.0, 0.5, 0.5, 1e-3]], np.float32)
    slots, weights = peak_pitch_classes(np.log(magnitude), *column_pitches(40, 5, bin_hz))
    # Bin 41 (column 2, 441 Hz) is the only bin above both neighbours; the plateau is not a
    # peak. Its neighbours are equal, so it is not shifted and keeps its own amplitude.
    assert slots.tolist() == [9]  # frame 0, pitch class A
    expected = 4.0 * np.cos(np.pi * _semitones_off_grid(41 * bin_hz)) ** 2
    assert np.isclose(weights[0], expected, rtol=1e-4)


def test_the_outer_columns_are_neighbours_only() -> None:
    magnitude = np.array([[4.0, 1.0, 0.5, 1.0, 4.0], [4.0, 1.0, 0.5, 1.0, 4.0]], np.float32)
    _, weights = peak_pitch_classes(np.log(magnitude), *column_pitches(41, 3, SR / 2048))
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
    slots, weights = peak_pitch_classes(columns, *column_pitches(first, n, SR / n_fft))
    reference = np.bincount(slots, weights, minlength=len(parts) * 12).reshape(-1, 12) ** 2
    audible = reference.sum(axis=1) > 1e-3 * reference.sum(axis=1).max()
    a, b = np.sqrt(ours[audible]), np.sqrt(reference[audible])
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cosine) > 0.999
    assert cosine.min() > 0.98
