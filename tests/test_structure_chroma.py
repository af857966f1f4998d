"""Chroma from decimated excerpts: the same pitch classes as a full-length FFT, far cheaper."""

import numpy as np
import scipy.fft

from devkit.synth import generate_song
from segue.structure.chroma import ChromaExtractor, chroma_filterbank

SR = 22050


def test_a_tone_lands_in_its_pitch_class() -> None:
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)  # A3
    chroma = ChromaExtractor(SR)(tone)
    assert chroma.shape == (4, 13)
    assert np.all(np.argmax(chroma[:, :12], axis=1) == 9)  # A
    assert np.allclose(chroma[:, 12], 20 * np.log10(0.3 / np.sqrt(2)), atol=0.05)


def test_decimated_chroma_matches_the_full_length_fft() -> None:
    audio = generate_song(71, duration_s=24, instrumentation="band").audio[: 16 * SR]
    windows = audio.reshape(16, SR)
    extractor = ChromaExtractor(SR)
    ours = 10 ** extractor(windows)[:, :12]
    # The reference: each frame's centred 4096 samples, Hann window, every FFT bin folded.
    first, filters = chroma_filterbank(SR, 4096)
    parts = windows[:, : 4 * 5512].reshape(-1, 5512)[:, 708 : 708 + 4096]
    spectrum = scipy.fft.rfft(parts * np.hanning(4097)[:-1], axis=1)
    reference = np.abs(spectrum[:, first : first + len(filters)]) ** 2 @ filters
    audible = reference.sum(axis=1) > 1e-3 * reference.sum(axis=1).max()
    a, b = np.sqrt(ours[audible]), np.sqrt(reference[audible])
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cosine) > 0.999
    assert cosine.min() > 0.98
