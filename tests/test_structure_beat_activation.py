"""The learned beat activation: its numpy network matches the torch model it was trained as,
it reads only its receptive field, the shipped weights are small and find the beats of a song
they never saw, and training batches keep their labels on the beats they stretch."""

from pathlib import Path

import numpy as np
import pytest

from devkit.synth import generate_song
from segue.structure.accumulator import audio_features
from segue.structure.analysis import ONSET_FPS, band_onsets
from segue.structure.beat_activation import (
    DEFAULT_WEIGHTS,
    INPUTS,
    BeatActivation,
    activation_inputs,
    default,
    load,
)
from segue.structure.beats import window_max

SR = 22050


def _inputs(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 2.0, (frames, INPUTS)).astype(np.float32)


def test_the_numpy_network_computes_what_its_torch_twin_computes() -> None:
    torch = pytest.importorskip("torch", reason="torch comes with the train extra")
    from training.train_beat_activation import BeatNet

    torch.manual_seed(3)
    model = BeatNet().eval()
    x = _inputs(1200)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x.T[None].copy()))[0, 0]).numpy()
    assert np.allclose(model.export()(x), expected, atol=1e-5)


def test_an_activation_depends_only_on_frames_within_its_receptive_field() -> None:
    network = default()
    x = _inputs(2000)
    changed = x.copy()
    changed[1000] += 5.0
    diff = np.abs(network(changed) - network(x)) > 0
    reach = network.receptive_frames
    assert diff[1000]
    assert not diff[: 1000 - reach].any() and not diff[1000 + reach + 1 :].any()


def test_the_shipped_weights_are_small_and_round_trip_through_their_file(tmp_path: Path) -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= 1_000_000
    network = load(DEFAULT_WEIGHTS)
    path = tmp_path / "copy.npz"
    network.save(path)
    again = load(path)
    x = _inputs(500)
    assert np.array_equal(again(x), network(x))
    assert isinstance(again, BeatActivation) and len(again.blocks) == len(network.blocks)


def test_empty_and_odd_length_inputs_give_one_probability_per_frame() -> None:
    network = default()
    assert network(np.zeros((0, INPUTS), np.float32)).shape == (0,)
    out = network(_inputs(777))
    assert out.shape == (777,) and np.all((out >= 0.0) & (out <= 1.0))


@pytest.mark.parametrize("seed", range(1000, 1006))
def test_the_shipped_activation_is_high_on_the_beats_of_songs_it_never_saw(seed: int) -> None:
    # Seeds from 1000 are the evaluation's generated songs; training read seeds 2000-2023 and
    # 3000-3023 and the tuning split of the MIDI set. A quarter of a beat from each beat lies
    # no beat and no eighth; the eighths themselves may draw the activation (the tracker
    # picks the level).
    song = generate_song(seed, duration_s=45.0)
    features = audio_features(song.audio, SR)
    full, _, bands = band_onsets(features)
    activation = default()(activation_inputs(full, bands))
    beats = np.asarray(song.beat_times_s)
    frames = beats[(beats > 1.0) & (beats < features.duration_s - 1.0)] * ONSET_FPS
    quarters = np.r_[frames[:-1] + 0.25 * np.diff(frames), frames[:-1] + 0.75 * np.diff(frames)]
    assert np.median(window_max(activation, frames - 3, frames + 3)) > 0.9
    assert np.median(window_max(activation, quarters - 1, quarters + 1)) < 0.05


def test_a_stretched_training_crop_keeps_its_beat_targets_on_its_onset_peaks() -> None:
    pytest.importorskip("torch", reason="torch comes with the train extra")
    from training.train_beat_activation import CROP_FRAMES, Example, augmented_crop

    frames = 3000
    beats = np.arange(40, frames - 40, 23)
    inputs = np.zeros((frames, INPUTS), np.float32)
    inputs[beats] = 1.0
    example = Example("gen", "pulses", inputs, beats / ONSET_FPS, beats[::4] / ONSET_FPS)
    rng = np.random.default_rng(7)
    for _ in range(5):
        x, y = augmented_crop(example, rng)
        assert x.shape == (INPUTS, CROP_FRAMES) and y.shape == (2, CROP_FRAMES)
        on_target = np.flatnonzero(y[0] == 1.0)
        assert len(on_target) >= 20
        # Each labelled frame is within a frame of a stretched input pulse's peak.
        pulse = x[0]
        peaks = 1 + np.flatnonzero(
            (pulse[1:-1] > 0.1) & (pulse[1:-1] >= pulse[:-2]) & (pulse[1:-1] >= pulse[2:])
        )
        assert all(np.min(np.abs(peaks - f)) <= 1 for f in on_target)
        assert set(np.flatnonzero(y[1] == 1.0)) <= set(on_target)
