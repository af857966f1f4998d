"""The streaming resampler: chunking never changes its output, and it resamples correctly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import upfirdn

from segue.audio import SUPPORTED_RATES_HZ
from segue.resample import StreamingResampler, _design, resample

MODEL_RATE = 22050


def _chunked(x: np.ndarray, rate_in: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = StreamingResampler(rate_in, MODEL_RATE)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(0, 3000))
        parts.append(r.push(x[i : i + n]))
        i += n
    parts.append(r.finish())
    return np.concatenate(parts)


@pytest.mark.parametrize("rate_in", SUPPORTED_RATES_HZ)
def test_random_chunking_gives_exactly_the_offline_output(rate_in: int) -> None:
    x = (np.random.default_rng(rate_in).standard_normal(rate_in + 123) * 0.2).astype(np.float32)
    assert np.array_equal(_chunked(x, rate_in, seed=1), resample(x, rate_in, MODEL_RATE))


@pytest.mark.parametrize("rate_in", [8000, 44100, 48000, 96000])
def test_output_length_is_the_input_duration_at_the_new_rate(rate_in: int) -> None:
    x = np.zeros(rate_in * 2 + 7, dtype=np.float32)
    expected = -(-x.size * MODEL_RATE // rate_in)
    assert resample(x, rate_in, MODEL_RATE).size == expected


@pytest.mark.parametrize("rate_in", [16000, 44100, 48000, 96000])
def test_a_tone_keeps_its_amplitude_and_phase(rate_in: int) -> None:
    t_in = np.arange(rate_in) / rate_in
    tone = np.sin(2 * np.pi * 440.0 * t_in).astype(np.float32)
    y = resample(tone, rate_in, MODEL_RATE)
    t_out = np.arange(y.size) / MODEL_RATE
    middle = slice(2000, y.size - 2000)  # away from the edges, where the input stops
    assert np.abs(y[middle] - np.sin(2 * np.pi * 440.0 * t_out[middle])).max() < 1e-3


def test_content_above_the_new_nyquist_is_removed() -> None:
    rate_in = 48000
    t = np.arange(rate_in) / rate_in
    alias = np.sin(2 * np.pi * 15000.0 * t).astype(np.float32)  # above 11025 Hz
    y = resample(alias, rate_in, MODEL_RATE)
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) < 1e-3


def test_restored_state_continues_exactly_where_the_original_stopped() -> None:
    x = (np.random.default_rng(7).standard_normal(30000) * 0.3).astype(np.float32)
    first = StreamingResampler(44100, MODEL_RATE)
    head = first.push(x[:12345])
    second = StreamingResampler.from_state(first.state())
    rest = np.concatenate([second.push(x[12345:]), second.finish()])
    assert np.array_equal(np.concatenate([head, rest]), resample(x, 44100, MODEL_RATE))


def test_the_model_rate_passes_through_unchanged() -> None:
    x = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    assert np.array_equal(resample(x, MODEL_RATE, MODEL_RATE), x)


def test_push_after_finish_is_an_error() -> None:
    r = StreamingResampler(48000, MODEL_RATE)
    r.finish()
    with pytest.raises(RuntimeError):
        r.push(np.zeros(10, dtype=np.float32))


def _by_definition(x: np.ndarray, rate_in: int) -> np.ndarray:
    """Output n = sum_j up * h[p + j*up] * x[newest - j], written out in numpy: the definition
    the polyphase kernel must compute (p, newest: the phase and newest input sample of the
    upsampled index n*down + delay)."""
    f = _design(rate_in, MODEL_RATE)
    taps = f.prototype.reshape(f.taps, f.up).T  # [phase, tap]
    padded = np.r_[np.zeros(f.taps), x.astype(np.float64), np.zeros(2 * f.taps)]
    count = -(-x.size * MODEL_RATE // rate_in)
    centre = np.arange(count) * f.down + f.delay
    newest = centre // f.up + f.taps
    window = padded[newest[:, None] - np.arange(f.taps)[None, :]]
    out: np.ndarray = (taps[centre % f.up] * window).sum(axis=1).astype(np.float32)
    return out


@pytest.mark.parametrize("rate_in", [8000, 16000, 44100, 48000, 96000])
def test_each_output_is_the_windowed_sinc_dot_product_of_its_input(rate_in: int) -> None:
    x = (np.random.default_rng(rate_in).standard_normal(rate_in // 2 + 17) * 0.3).astype(
        np.float32)
    np.testing.assert_allclose(resample(x, rate_in, MODEL_RATE), _by_definition(x, rate_in),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("rate_in", [16000, 48000, 22051])
def test_the_kept_polyphase_kernel_equals_scipys_upfirdn(rate_in: int) -> None:
    # The resampler keeps scipy's private _UpFIRDn per filter (scipy is pinned exactly).
    f = _design(rate_in, MODEL_RATE)
    x = np.random.default_rng(5).standard_normal(3000)
    assert np.array_equal(f.kernel.apply_filter(x), upfirdn(f.prototype, x, f.up, f.down))
