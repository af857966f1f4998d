import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

from bench.midi_set import FONTS, SR, render
from devkit.synth import generate_song
from segue.structure import analyze_audio
from segue.structure.key import estimate_key


@pytest.mark.parametrize(
    ("seed", "key"), [(31, "E major"), (32, "F# minor"), (33, "Bb major"), (34, "C minor")]
)
def test_key_of_generated_song_is_found(seed: int, key: str) -> None:
    song = generate_song(seed, duration_s=40, key=key)
    result = analyze_audio(song.audio, song.sample_rate_hz)
    assert result.key.name == key
    assert result.key.camelot == song.camelot
    assert result.key.confidence > 0.4


def test_key_of_empty_chroma_is_a_zero_confidence_guess() -> None:
    estimate = estimate_key(np.zeros((0, 12), np.float32), np.zeros(0, np.float32))
    assert estimate.confidence == 0.0


@pytest.mark.parametrize("signal", ["white noise", "one held tone"])
def test_noise_or_one_tone_gives_a_key_below_the_export_threshold(signal: str) -> None:
    from segue.export.track import MIN_KEY_CONFIDENCE

    t = np.arange(20 * SR) / SR
    audio = (
        0.1 * np.random.default_rng(0).standard_normal(len(t))
        if signal == "white noise"
        else 0.3 * np.sin(2 * np.pi * 440.0 * t)
    )
    assert analyze_audio(audio.astype(np.float32), SR).key.confidence < MIN_KEY_CONFIDENCE


def test_key_scores_are_correlations_with_each_rotated_profile() -> None:
    from segue.structure.key import MAJOR_PROFILE, MINOR_PROFILE, key_scores

    chroma = np.random.default_rng(3).random(12)
    expected = [
        np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
        for profile in (MAJOR_PROFILE, MINOR_PROFILE)
        for tonic in range(12)
    ]
    assert np.allclose(key_scores(chroma), expected)


needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not all(f.exists() for f in FONTS.values()),
    reason="fluidsynth or a Debian General MIDI soundfont is missing (make system)",
)


Note = tuple[int, int, int, int]  # start tick, channel, MIDI note, length in ticks (480 a beat)


def _write_midi(path: Path, bpm: float, setup: list[mido.Message], notes: list[Note]) -> None:
    """One track: the tempo, the `setup` messages (programs, bends), then the notes."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)), *setup])
    midi.tracks.append(track)
    events = [(t, mido.Message("note_on", channel=c, note=n, velocity=100)) for t, c, n, _ in notes]
    events += [(t + d, mido.Message("note_off", channel=c, note=n)) for t, c, n, d in notes]
    last = 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        track.append(message.copy(time=tick - last))
        last = tick
    midi.save(path)


def _power_chord_riff(path: Path, roots: list[int]) -> None:
    """At 160 BPM, eighth-note power chords (root, fifth, octave) on a distortion guitar, the
    bass on the root an octave down, kick and snare on alternate beats: two bars per root."""
    notes: list[Note] = []
    for i, root in enumerate(r for r in roots for _ in range(16)):
        notes += [(240 * i, 0, n, 220) for n in (root, root + 7, root + 12)]
        notes.append((240 * i, 1, root - 12, 220))
        if i % 2 == 0:
            notes.append((240 * i, 9, 36 if i % 4 == 0 else 38, 100))  # kick, snare
    programs = [
        mido.Message("program_change", channel=0, program=30),  # distortion guitar
        mido.Message("program_change", channel=1, program=33),  # finger bass
    ]
    _write_midi(path, 160.0, programs, notes)


@needs_fluidsynth
@pytest.mark.parametrize("font", ["fluidr3", "timgm6mb"])
@pytest.mark.parametrize("roots", [[45, 41, 43, 40], [45, 43, 41, 40]], ids=["AFGE", "AGFE"])
def test_a_minor_power_chord_riff_is_not_read_on_its_dominant(
    tmp_path: Path, font: str, roots: list[int]
) -> None:
    # The freedm tuning pieces' regression: distorted power chords (no third) in A minor were
    # read as E major or E minor, or C major, from the partials of the energy-summed bins.
    _power_chord_riff(tmp_path / "riff.mid", roots)
    audio = render(tmp_path / "riff.mid", FONTS[font])
    assert analyze_audio(audio, SR).key.name == "A minor"


def _piano_progression(path: Path, chords: list[list[int]], cents: float) -> None:
    """Whole-note piano triads over their root an octave down, at 100 BPM, the whole piece
    bent `cents` off A440 (the default bend range is +-2 semitones over +-8191)."""
    notes = [(1920 * i, 0, n, 1900) for i, c in enumerate(chords) for n in [*c, c[0] - 12]]
    setup = [
        mido.Message("program_change", channel=0, program=0),
        mido.Message("pitchwheel", channel=0, pitch=round(8191 * cents / 200)),
    ]
    _write_midi(path, 100.0, setup, notes)


A_MINOR_CHORDS = [[57, 60, 64], [62, 65, 69], [56, 59, 64], [57, 60, 64]] * 2  # Am Dm E Am
C_MAJOR_CHORDS = [[60, 64, 67], [53, 57, 60], [55, 59, 62], [60, 64, 67]] * 2  # C F G C


@needs_fluidsynth
@pytest.mark.parametrize("font", ["fluidr3", "timgm6mb"])
@pytest.mark.parametrize("cents", [45.0, -32.0], ids=["45 cents sharp", "432 Hz"])
@pytest.mark.parametrize(
    ("chords", "key"), [(A_MINOR_CHORDS, "A minor"), (C_MAJOR_CHORDS, "C major")], ids=["Am", "C"]
)
def test_a_piece_tuned_off_a440_keeps_its_key(
    tmp_path: Path, font: str, cents: float, chords: list[list[int]], key: str
) -> None:
    # Read on A440's grid, a piano 45 cents sharp was C minor or F major: its partials fell
    # between the pitch classes and weighed less than noise.
    _piano_progression(tmp_path / "piece.mid", chords, cents)
    audio = render(tmp_path / "piece.mid", FONTS[font])
    assert analyze_audio(audio, SR).key.name == key
