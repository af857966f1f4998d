"""Streaming accumulation: window-by-window equals offline, and the state survives a resume."""

import struct
from pathlib import Path

import numpy as np
import pytest

from devkit.synth import generate_song
from segue.structure import StructureAccumulator, analyze_audio
from segue.structure.onset import LogMel

SR = 22050


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return generate_song(41, duration_s=30, tempo_bpm=120).audio


def _push_all(state: StructureAccumulator, audio: np.ndarray, start: int = 0) -> None:
    for i in range(start, len(audio), SR):
        state.push(audio[i : i + SR])


def test_pushing_window_by_window_equals_offline_analysis(song: np.ndarray) -> None:
    state = StructureAccumulator(SR)
    _push_all(state, song)
    assert state.analyze() == analyze_audio(song, SR)


def test_a_short_final_window_is_accepted(song: np.ndarray) -> None:
    audio = song[: 10 * SR + 1234]
    state = StructureAccumulator(SR)
    _push_all(state, audio)
    assert state.windows_pushed == 11
    assert state.duration_s == pytest.approx(len(audio) / SR)


def test_resuming_from_bytes_mid_song_gives_the_same_result(song: np.ndarray) -> None:
    whole = StructureAccumulator(SR)
    _push_all(whole, song)
    first = StructureAccumulator(SR)
    _push_all(first, song[: 12 * SR])
    resumed = StructureAccumulator.from_bytes(first.to_bytes())
    _push_all(resumed, song, start=12 * SR)
    assert resumed.analyze() == whole.analyze()
    assert resumed.to_bytes() == whole.to_bytes()


def test_state_grows_by_under_600_bytes_per_second_of_audio(song: np.ndarray) -> None:
    state = StructureAccumulator(SR)
    _push_all(state, song[: 10 * SR])
    at_10_s = len(state.to_bytes())
    _push_all(state, song[10 * SR : 30 * SR])
    assert at_10_s < 600 * 10 + 1000
    assert (len(state.to_bytes()) - at_10_s) / 20 < 600


def test_an_empty_state_round_trips_and_analyses() -> None:
    state = StructureAccumulator.from_bytes(StructureAccumulator(SR).to_bytes())
    assert state.windows_pushed == 0
    assert state.analyze().beat_times_s == ()


@pytest.mark.parametrize(
    "corrupt",
    [
        b"",
        b"nonsense",
        b"SGST\x01\x00\x00\x00\x00\x00garbage",
    ],
)
def test_corrupt_bytes_raise_value_error(corrupt: bytes) -> None:
    with pytest.raises(ValueError):
        StructureAccumulator.from_bytes(corrupt)


def test_flipped_bit_and_truncation_raise_value_error(song: np.ndarray) -> None:
    state = StructureAccumulator(SR)
    _push_all(state, song[: 5 * SR])
    data = bytearray(state.to_bytes())
    with pytest.raises(ValueError):
        StructureAccumulator.from_bytes(bytes(data[:-5]))
    data[len(data) // 2] ^= 0x10
    with pytest.raises(ValueError):
        StructureAccumulator.from_bytes(bytes(data))


def test_unknown_version_is_rejected(song: np.ndarray) -> None:
    data = bytearray(StructureAccumulator(SR).to_bytes())
    data[4] = 99
    with pytest.raises(ValueError, match="version"):
        StructureAccumulator.from_bytes(bytes(data))


def test_model_mel_frames_drive_the_onsets_when_given(song: np.ndarray) -> None:
    # Stand-in for the model's frames: the own log-mel computed per window (45 frames).
    state = StructureAccumulator(SR)
    front = LogMel(SR)
    for i in range(0, len(song), SR):
        window = song[i : i + SR]
        mel, _ = front.frames(np.zeros(0, np.float32), window)
        state.push(window, mel)
    result = state.analyze()
    assert result.tempo_bpm == pytest.approx(120, rel=0.02)
    restored = StructureAccumulator.from_bytes(state.to_bytes())
    assert restored.analyze() == result


def test_mixing_mel_and_pcm_windows_is_rejected(song: np.ndarray) -> None:
    state = StructureAccumulator(SR)
    state.push(song[:SR])
    with pytest.raises(ValueError):
        state.push(song[SR : 2 * SR], np.zeros((44, 64), np.float32))


@pytest.mark.parametrize(
    "window",
    [np.zeros(0, np.float32), np.full(SR, np.nan, np.float32), np.zeros(10 * SR, np.float32)],
)
def test_invalid_windows_are_rejected(window: np.ndarray) -> None:
    with pytest.raises(ValueError):
        StructureAccumulator(SR).push(window)


def _model_frames(window: np.ndarray) -> np.ndarray:
    mel, _ = LogMel(SR).frames(np.zeros(0, np.float32), window)
    return mel


def test_pushing_a_batch_of_windows_equals_pushing_them_one_by_one(song: np.ndarray) -> None:
    windows = song[: 16 * SR].reshape(16, SR)
    mels = np.stack([_model_frames(w) for w in windows])
    single = StructureAccumulator(SR)
    for w, m in zip(windows, mels, strict=True):
        single.push(w, m)
    batched = StructureAccumulator(SR)
    batched.push_batch(windows[:5], mels[:5])
    batched.push_batch(windows[5:], mels[5:])
    assert batched.to_bytes() == single.to_bytes()
    assert batched.analyze() == single.analyze()


def test_a_batch_with_mismatched_mel_frames_is_rejected(song: np.ndarray) -> None:
    windows = song[: 2 * SR].reshape(2, SR)
    with pytest.raises(ValueError):
        StructureAccumulator(SR).push_batch(windows, np.zeros((1, 45, 40), np.float32))


def test_own_log_mel_matches_the_model_frames_to_within_rounding() -> None:
    import onnxruntime as ort

    from segue.structure.onset import FRAME_S, N_MELS

    model = Path(__file__).resolve().parents[1] / "models" / "segue_stream.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert int(meta["segue.frame_hop_samples"]) == round(FRAME_S * SR)
    assert int(meta["segue.n_mels"]) == N_MELS
    audio = generate_song(42, duration_s=4, tempo_bpm=100).audio[: 2 * SR]
    state = np.zeros((1, int(meta["segue.state_dim"])), np.float32)
    frames = session.run(["frames"], {"pcm": audio[None], "state": state})
    ours = _model_frames(audio)
    assert ours.shape == frames[0][0].shape
    assert np.max(np.abs(ours - frames[0][0])) < 0.01


def test_writing_the_state_mid_stream_changes_nothing_that_follows(song: np.ndarray) -> None:
    # Checkpoints flush (as the embedder's do): windows held back for a group are analysed
    # early, in smaller groups; groups must not matter.
    checkpointed = StructureAccumulator(SR)
    plain = StructureAccumulator(SR)
    for i in range(0, len(song), SR):
        checkpointed.push(song[i : i + SR])
        plain.push(song[i : i + SR])
        if (i // SR) % 5 == 4:
            checkpointed.flush()
            checkpointed.to_bytes()
    assert checkpointed.to_bytes() == plain.to_bytes()
    assert checkpointed.analyze() == plain.analyze()


def test_windows_held_back_for_a_group_are_counted_and_analysed(song: np.ndarray) -> None:
    state = StructureAccumulator(SR)
    _push_all(state, song[: 3 * SR])
    assert state.windows_pushed == 3
    assert state.duration_s == pytest.approx(3.0)
    features = state.features()
    assert len(features.onset_full) == 3 * 45
    assert len(features.chroma) == 3 * 4


@pytest.mark.parametrize("section", ["windows", "onset", "tonal", "timbre", "previous mel"])
def test_a_changed_byte_in_any_part_of_the_state_is_detected(
    song: np.ndarray, section: str
) -> None:
    state = StructureAccumulator(SR)
    _push_all(state, song[: 5 * SR])
    data = bytearray(state.to_bytes())
    # Sections in layout order after the 10-byte header and the 40-byte fixed part.
    sizes = {
        "windows": 5 * 3 * 4,
        "onset": 5 * 45 * 2 * 2,
        "tonal": 5 * 4 * 13 * 2,
        "timbre": 5 * 2 * 13 * 2,
        "previous mel": 40 * 4,
    }
    offset = 10 + 40
    for name, size in sizes.items():
        if name == section:
            data[offset + size // 2] ^= 0x01
            break
        offset += size
    with pytest.raises(ValueError, match="checksum"):
        StructureAccumulator.from_bytes(bytes(data))


def test_a_version_2_state_written_before_the_upgrade_is_still_read(song: np.ndarray) -> None:
    import io
    import struct
    import zlib

    state = StructureAccumulator(SR)
    _push_all(state, song[: 8 * SR])
    features = state.features()
    restored_now = StructureAccumulator.from_bytes(state.to_bytes())
    # The version 2 layout: an npz archive of these arrays, zlib-compressed, behind a header.
    windows = np.tile(np.asarray([SR, 45, 4], np.int32), (8, 1))  # samples, mel, chroma frames
    tonal = np.c_[features.chroma, features.level_db].astype(np.float16)
    arrays = {
        "meta": np.asarray([SR, 1], np.int64),
        "window_lengths": windows[:, 0],
        "mel_counts": windows[:, 1],
        "chroma_counts": windows[:, 2],
        "onset": np.c_[features.onset_full, features.onset_low].astype(np.float16),
        "tonal": tonal,
        "timbre": features.timbre.astype(np.float16),
        "previous_mel": np.zeros(0, np.float32),
        "tail": np.zeros(0, np.float32),
    }
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    payload = zlib.compress(buffer.getvalue())
    old = struct.pack("<4sHI", b"SGST", 2, zlib.crc32(payload)) + payload
    restored = StructureAccumulator.from_bytes(old)
    assert restored.windows_pushed == 8
    # Its onsets are widened to band groups that keep the all-band and bass-band flux.
    widened = restored.features()
    assert np.array_equal(widened.onset_low, features.onset_low)
    assert np.allclose(widened.onset_full, features.onset_full, rtol=2e-3, atol=2e-3)
    assert widened.onset_bands.shape == (len(features.onset_full), 4)
    assert np.array_equal(widened.chroma, restored_now.features().chroma)
    assert restored.analyze().duration_s == restored_now.analyze().duration_s


def test_spectral_flux_leaves_its_input_alone_unless_told_to_overwrite_it(
    song: np.ndarray,
) -> None:
    from segue.structure.onset import spectral_flux

    mel = _model_frames(song[:SR])
    kept = mel.copy()
    flux = spectral_flux(mel, None)
    assert np.array_equal(mel, kept)
    assert np.array_equal(spectral_flux(mel, None, overwrite=True), flux)
    assert flux[0].tolist() == [0.0, 0.0, 0.0, 0.0]  # one column per band group
    assert np.all(flux >= 0.0)


def _features_bytes(state: StructureAccumulator) -> list[bytes]:
    return [np.asarray(v).tobytes() for v in vars(state.features()).values()]


def test_reading_features_and_bytes_repeatedly_changes_nothing(song: np.ndarray) -> None:
    # 13 windows: 8 analysed as a group, 5 still held back when read.
    read = StructureAccumulator(SR)
    never_read = StructureAccumulator(SR)
    for state in (read, never_read):
        _push_all(state, song[: 13 * SR])
    first_bytes, first_features = read.to_bytes(), _features_bytes(read)
    for _ in range(3):
        assert read.to_bytes() == first_bytes
        assert _features_bytes(read) == first_features
        assert read.windows_pushed == 13
    assert read.analyze() == StructureAccumulator.from_bytes(first_bytes).analyze()
    for state in (read, never_read):
        _push_all(state, song, start=13 * SR)
    assert read.to_bytes() == never_read.to_bytes()
    assert read.analyze() == never_read.analyze()


def test_flushing_held_windows_changes_neither_the_bytes_nor_the_analysis(
    song: np.ndarray,
) -> None:
    state = StructureAccumulator(SR)
    _push_all(state, song[: 13 * SR])
    before, result = state.to_bytes(), state.analyze()
    state.flush()
    assert state.to_bytes() == before
    assert state.analyze() == result
    assert state.windows_pushed == 13


# States from the first windows of `song`: tests/data/structure_state_v<N>_pcm.bin after the
# first 10 windows of ODD_WINDOWS without mel frames (so a partial frame is carried),
# structure_state_v<N>_mel.bin after 12 one-second windows with their mel frames. Version 3
# (onset flux over all bands and the bass bands) was written before the accumulator was split
# into features, pending windows and codec; version 4 has flux per band group; version 5
# (chroma from spectral peaks) is the current.
DATA = Path(__file__).resolve().parent / "data"
ODD_WINDOWS = (SR, SR, 15435, 8000)


def _push_odd(state: StructureAccumulator, audio: np.ndarray, first: int, last: int) -> None:
    """Pushes windows first..last-1 of audio cut cyclically into ODD_WINDOWS lengths."""
    start = 0
    for index in range(last):
        length = ODD_WINDOWS[index % len(ODD_WINDOWS)]
        if index >= first and start < len(audio):
            state.push(audio[start : start + length])
        start += length


def _push_mel(state: StructureAccumulator, audio: np.ndarray, start: int = 0) -> None:
    for i in range(start, len(audio), SR):
        state.push(audio[i : i + SR], _model_frames(audio[i : i + SR]))


def test_the_same_windows_write_the_same_bytes_as_the_recorded_states(song: np.ndarray) -> None:
    pcm = StructureAccumulator(SR)
    _push_odd(pcm, song, 0, 10)
    mel = StructureAccumulator(SR)
    _push_mel(mel, song[: 12 * SR])
    assert pcm.to_bytes() == (DATA / "structure_state_v5_pcm.bin").read_bytes()
    assert mel.to_bytes() == (DATA / "structure_state_v5_mel.bin").read_bytes()


@pytest.mark.parametrize("name", ["structure_state_v5_pcm.bin", "structure_state_v5_mel.bin"])
def test_a_recorded_state_is_written_back_byte_for_byte(name: str) -> None:
    from segue.structure.state_codec import decode, encode

    data = (DATA / name).read_bytes()
    assert encode(decode(data)) == data
    assert StructureAccumulator.from_bytes(data).to_bytes() == data


@pytest.mark.parametrize("source", ["pcm", "mel"])
def test_a_version_4_state_is_written_back_as_version_5_with_the_same_body(source: str) -> None:
    # Version 5 changed what the chroma holds, not the layout: only the version field moves.
    data = (DATA / f"structure_state_v4_{source}.bin").read_bytes()
    again = StructureAccumulator.from_bytes(data).to_bytes()
    assert struct.unpack_from("<H", again, 4) == (5,)
    assert again[:4] + again[6:] == data[:4] + data[6:]


@pytest.mark.parametrize("source", ["pcm", "mel"])
def test_a_version_3_state_reads_as_the_same_windows_with_widened_onsets(source: str) -> None:
    old = StructureAccumulator.from_bytes((DATA / f"structure_state_v3_{source}.bin").read_bytes())
    new = StructureAccumulator.from_bytes((DATA / f"structure_state_v4_{source}.bin").read_bytes())
    before, now = old.features(), new.features()
    assert old.windows_pushed == new.windows_pushed
    assert np.array_equal(before.onset_times_s, now.onset_times_s)
    assert np.array_equal(before.chroma, now.chroma)
    assert np.array_equal(before.timbre, now.timbre)
    # The bass group and the mean over all bands are kept; the upper groups share the rest.
    assert np.allclose(before.onset_low, now.onset_low, atol=1e-3)
    assert np.allclose(before.onset_full, now.onset_full, rtol=5e-3, atol=5e-3)
    assert np.all(before.onset_bands[:, 1] == before.onset_bands[:, 3])


def test_tokens_issued_before_the_upgrade_resume_to_the_same_song(song: np.ndarray) -> None:
    for source in ("pcm", "mel"):
        whole = StructureAccumulator(SR)
        resumed = StructureAccumulator.from_bytes(
            (DATA / f"structure_state_v3_{source}.bin").read_bytes()
        )
        first, frames = resumed.windows_pushed, len(resumed.features().onset_full)
        if source == "pcm":
            _push_odd(whole, song, 0, 60)
            _push_odd(resumed, song, first, 60)
        else:
            _push_mel(whole, song)
            _push_mel(resumed, song, start=first * SR)
        assert resumed.windows_pushed == whole.windows_pushed
        later, reference = resumed.features(), whole.features()
        assert 0 < frames < len(reference.onset_full)
        # Windows pushed after the resume have exactly the features of an unbroken stream.
        assert np.array_equal(later.onset_bands[frames:], reference.onset_bands[frames:])
        # Chroma frames from before the resume keep the kind they were written with.
        chroma_frames = len(
            StructureAccumulator.from_bytes(
                (DATA / f"structure_state_v3_{source}.bin").read_bytes()
            ).features().chroma
        )
        assert np.array_equal(later.chroma[chroma_frames:], reference.chroma[chroma_frames:])
        assert resumed.analyze().tempo_bpm == pytest.approx(whole.analyze().tempo_bpm, rel=0.01)
