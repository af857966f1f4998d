"""Labels of the real-composition set: read exactly from MIDI files, rendered reproducibly."""

from __future__ import annotations

import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

from bench.midi_labels import checked_key, mir_key, read_labels
from bench.midi_set import FONTS, SR, render, split_of

TICKS = 480


def _write_song(path: Path, melody: list[int] | None = None) -> None:
    """Two tracks: a conductor with 120 BPM 4/4, then 100 BPM at bar 2, then 150 BPM and 3/4
    at bar 3 (tick 3840); a piano track with a half-beat note on each of 14 beats."""
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=500_000, time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("key_signature", key="F", time=0),
            mido.MetaMessage("set_tempo", tempo=600_000, time=1920),
            mido.MetaMessage("set_tempo", tempo=400_000, time=1920),
            mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
            mido.MetaMessage("marker", text="chorus", time=0),
        ]
    )
    notes = melody or [62, 65, 69, 74]
    piano = mido.MidiTrack([mido.Message("program_change", program=0, time=0)])
    for beat in range(14):
        note = notes[beat % len(notes)]
        piano.append(mido.Message("note_on", note=note, velocity=90, time=0 if beat == 0 else 240))
        piano.append(mido.Message("note_off", note=note, velocity=0, time=240))
    song = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    song.tracks += [conductor, piano]
    song.save(str(path))


def test_beats_follow_two_tempo_changes_and_a_meter_change_exactly(tmp_path: Path) -> None:
    _write_song(tmp_path / "song.mid")
    labels = read_labels(tmp_path / "song.mid")
    # 4 beats of 0.5 s, 4 of 0.6 s, then 3/4 bars of 0.4 s beats until the last note's end.
    expected = [0.0, 0.5, 1.0, 1.5, 2.0, 2.6, 3.2, 3.8, 4.4, 4.8, 5.2, 5.6, 6.0, 6.4]
    np.testing.assert_allclose(labels.beats_s, expected, atol=1e-9)
    np.testing.assert_allclose(labels.downbeats_s, [0.0, 2.0, 4.4, 5.6], atol=1e-9)
    # The file ends when its last note does: the note on the beat at 6.4 s lasts half a beat.
    assert labels.duration_s == pytest.approx(6.6)
    assert [(round(t, 9), round(b, 6)) for t, b in labels.tempi] == [
        (0.0, 120.0),
        (2.0, 100.0),
        (4.4, 150.0),
    ]
    assert [(round(t, 9), n, d) for t, n, d in labels.meters] == [(0.0, 4, 4), (4.4, 3, 4)]
    assert labels.keys == [(0.0, "F major")]
    assert [(round(t, 9), text) for t, text in labels.markers] == [(4.4, "chorus")]


def test_an_excerpt_keeps_only_the_labels_before_its_end(tmp_path: Path) -> None:
    _write_song(tmp_path / "song.mid")
    cut = read_labels(tmp_path / "song.mid").excerpt(4.0)
    np.testing.assert_allclose(cut.beats_s, [0.0, 0.5, 1.0, 1.5, 2.0, 2.6, 3.2, 3.8])
    assert cut.markers == [] and len(cut.meters) == 1 and cut.duration_s == 4.0
    # The longest-held tempo among the excerpt's beats: 120 BPM (2.0 s) over 100 BPM (1.8 s).
    assert cut.main_bpm() == pytest.approx(120.0)
    longer = read_labels(tmp_path / "song.mid").excerpt(4.5)
    assert longer.main_bpm() == pytest.approx(100.0)  # now 2.4 s at 100 BPM


def test_key_signature_names_are_spelled_as_mir_eval_reads_them() -> None:
    assert mir_key("Bb") == "Bb major"
    assert mir_key("F#m") == "F# minor"
    assert mir_key("Db") == "C# major"


def test_a_signature_takes_the_mode_its_notes_imply(tmp_path: Path) -> None:
    # One flat written; D-F-A chords: D minor, the signature's relative minor.
    _write_song(tmp_path / "minor.mid", [62, 65, 69, 74])
    labels = read_labels(tmp_path / "minor.mid")
    assert checked_key(tmp_path / "minor.mid", labels, 10.0) == "D minor"
    # The same signature over F-A-C: F major.
    _write_song(tmp_path / "major.mid", [65, 69, 72, 77])
    labels = read_labels(tmp_path / "major.mid")
    assert checked_key(tmp_path / "major.mid", labels, 10.0) == "F major"


def test_both_renderings_of_a_piece_fall_in_the_same_fixed_split() -> None:
    assert split_of("simutrans/01-Simutrans-Main-Theme") == split_of(
        "simutrans/01-Simutrans-Main-Theme"
    )
    names = [f"openmsx/piece{i}" for i in range(90)]
    tuning = sum(split_of(n) == "tuning" for n in names)
    assert 15 <= tuning <= 45  # about a third


needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not all(f.exists() for f in FONTS.values()),
    reason="fluidsynth and the Debian soundfonts (scripts/setup_system.sh installs them)",
)


@needs_fluidsynth
def test_the_renderer_gives_identical_samples_for_one_soundfont(tmp_path: Path) -> None:
    _write_song(tmp_path / "song.mid")
    first = render(tmp_path / "song.mid", FONTS["fluidr3"])
    second = render(tmp_path / "song.mid", FONTS["fluidr3"])
    other = render(tmp_path / "song.mid", FONTS["timgm6mb"])
    assert first.dtype == np.float32 and len(first) >= 6.4 * SR
    assert np.array_equal(first, second)
    assert np.sqrt(np.mean(first**2)) > 1e-3  # not silence
    # The second soundfont changes the timbre, not the notes' timing.
    n = min(len(first), len(other))
    assert not np.allclose(first[:n], other[:n], atol=1e-3)


@needs_fluidsynth
def test_rendering_an_excerpt_stops_near_its_end(tmp_path: Path) -> None:
    _write_song(tmp_path / "song.mid")
    whole = render(tmp_path / "song.mid", FONTS["timgm6mb"])
    cut = render(tmp_path / "song.mid", FONTS["timgm6mb"], end_s=3.0)
    assert len(cut) < len(whole)
    # Until the cut the excerpt is the same music: the same samples.
    np.testing.assert_allclose(cut[: int(2.5 * SR)], whole[: int(2.5 * SR)], atol=1e-6)
