"""Sources of the real-composition set: MIDI lumps taken out of Doom WADs, files whose notes do
not follow their labelled beat left out, a source held out whole, and the report by source."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import mido
import numpy as np

from bench.eval_midi import by_source, source_lines
from bench.midi_set import (
    HELDOUT_SOURCES,
    MIN_ON_GRID,
    SOURCES,
    TUNING_SOURCES,
    _usable,
    distinct_files,
    extract_wad_midi,
    on_grid_share,
    split_of,
    wad_midi_lumps,
)

TICKS = 480


def _midi_bytes(onset_ticks: list[int], ticks_per_beat: int = TICKS, bpm: float = 120.0) -> bytes:
    """A one-track file at `bpm` in 4/4 with a short note at each of `onset_ticks`."""
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        ]
    )
    last = 0
    for tick in onset_ticks:
        track.append(mido.Message("note_on", note=60, velocity=90, time=tick - last))
        track.append(mido.Message("note_off", note=60, velocity=0, time=1))
        last = tick + 1
    song = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    song.tracks.append(track)
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()


def _write_wad(path: Path, lumps: list[tuple[str, bytes]]) -> None:
    """An IWAD: header, the lumps' bytes, then the directory."""
    body = b"".join(data for _, data in lumps)
    directory = b""
    offset = 12
    for name, data in lumps:
        directory += struct.pack("<ii8s", offset, len(data), name.encode())
        offset += len(data)
    path.write_bytes(struct.pack("<4sii", b"IWAD", len(lumps), 12 + len(body)) + body + directory)


def _quantised_ticks(beats: int = 64) -> list[int]:
    """Eighth notes and a few triplet eighths: every onset on the grid."""
    eighths = [i * TICKS // 2 for i in range(2 * beats)]
    triplets = [beats * TICKS + i * TICKS // 3 for i in range(6)]
    return eighths + triplets


def _mus_like_ticks(seconds: float = 40.0) -> list[int]:
    """Onsets on a 140 Hz clock read under a 95 BPM tempo map at 89 ticks per beat, as a
    MUS-to-MIDI conversion writes them: they fall anywhere within the labelled beats."""
    rng = np.random.default_rng(7)
    clock = np.sort(rng.choice(int(seconds * 140), size=300, replace=False))
    return [int(t) for t in clock]


def test_midi_lumps_come_out_of_a_wad_and_music_in_mus_format_stays_in(tmp_path: Path) -> None:
    song, other = _midi_bytes([0, 480]), _midi_bytes([0, 240, 480])
    _write_wad(
        tmp_path / "game.wad",
        [
            ("D_E1M1", song),
            ("PLAYPAL", b"\x00" * 30),
            ("D_E1M2", b"MUS\x1a" + b"\x00" * 20),
            ("D_E1M3", other),
        ],
    )
    assert wad_midi_lumps(tmp_path / "game.wad") == [("D_E1M1", song), ("D_E1M3", other)]


def test_each_wads_midi_lumps_are_written_under_the_wads_name(tmp_path: Path) -> None:
    song, other = _midi_bytes([0, 480]), _midi_bytes([0, 240, 480])
    _write_wad(tmp_path / "one.wad", [("D_RUNNIN", song)])
    _write_wad(tmp_path / "two.wad", [("D_STALKS", song), ("D_COUNTD", other)])
    out = tmp_path / "out"
    out.mkdir()
    extract_wad_midi([tmp_path / "one.wad", tmp_path / "two.wad"], out)
    names = sorted(p.name for p in out.glob("*.mid"))
    assert names == ["one_runnin.mid", "two_countd.mid", "two_stalks.mid"]
    assert (out / "two_countd.mid").read_bytes() == other
    # The reused lump is kept once when the set is built.
    kept = [path.name for _, path in distinct_files({"freedoom": out})]
    assert kept == ["one_runnin.mid", "two_countd.mid"]


def test_a_file_that_is_not_a_wad_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.wad").write_bytes(b"RIFF" + b"\x00" * 20)
    try:
        wad_midi_lumps(tmp_path / "x.wad")
    except ValueError as error:
        assert "not a WAD" in str(error)
    else:
        raise AssertionError("a RIFF file was read as a WAD")


def test_notes_on_sixteenths_and_triplets_are_on_the_grid(tmp_path: Path) -> None:
    (tmp_path / "q.mid").write_bytes(_midi_bytes(_quantised_ticks()))
    assert on_grid_share(mido.MidiFile(str(tmp_path / "q.mid"))) == 1.0


def test_a_mus_conversion_whose_beats_are_no_beats_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "mus.mid").write_bytes(_midi_bytes(_mus_like_ticks(), ticks_per_beat=89, bpm=95))
    (tmp_path / "ok.mid").write_bytes(_midi_bytes(_quantised_ticks()))
    share = on_grid_share(mido.MidiFile(str(tmp_path / "mus.mid")))
    assert share < MIN_ON_GRID
    assert _usable(tmp_path / "mus.mid") is None
    assert _usable(tmp_path / "ok.mid") is not None


def test_a_source_held_out_whole_never_lands_in_the_tuning_split() -> None:
    assert "freedoom" in HELDOUT_SOURCES
    assert {split_of(f"freedoom/freedoom2_map{i:02d}") for i in range(60)} == {"heldout"}
    # The other sources keep their split of pieces.
    assert {split_of(f"simutrans/piece{i}") for i in range(60)} == {"tuning", "heldout"}


def test_a_tuning_source_is_tuned_on_whole() -> None:
    assert "freedm" in TUNING_SOURCES and not TUNING_SOURCES & HELDOUT_SOURCES
    assert {split_of(f"freedm/freedm_map{i:02d}") for i in range(60)} == {"tuning"}


def test_a_piece_two_sources_share_is_kept_once_in_the_first_source(tmp_path: Path) -> None:
    shared, own, other = _midi_bytes([0]), _midi_bytes([0, 480]), _midi_bytes([0, 240])
    folders = {"freedoom": tmp_path / "freedoom", "freedm": tmp_path / "freedm"}
    for folder in folders.values():
        folder.mkdir()
    (folders["freedoom"] / "freedoom2_read_m.mid").write_bytes(shared)
    (folders["freedoom"] / "freedoom2_tense.mid").write_bytes(own)
    (folders["freedm"] / "freedm_read_m.mid").write_bytes(shared)
    (folders["freedm"] / "freedm_evil.mid").write_bytes(other)
    kept = [(source, path.name) for source, path in distinct_files(folders)]
    assert kept == [
        ("freedoom", "freedoom2_read_m.mid"),
        ("freedoom", "freedoom2_tense.mid"),
        ("freedm", "freedm_evil.mid"),
    ]
    # The set lists the held-out source before the tuning one, so a shared piece stays out of
    # the tuning split.
    order = list(SOURCES)
    assert order.index("freedoom") < order.index("freedm")


def _row(name: str, f: float, cmlt: float, acc1: float) -> dict[str, object]:
    scores = {"f_measure": f, "cmlt": cmlt, "acc1": acc1, "bpm": 120.0}
    return {
        "name": name,
        "bpm": 120.0,
        **{w: scores for w in ("ours", "librosa", "essentia", "madmom")},
    }


def test_the_report_gives_each_source_its_own_means_and_says_which_is_held_out_whole() -> None:
    rows = [
        _row("openmsx/a", 1.0, 1.0, 1.0),
        _row("openmsx/b", 0.5, 0.0, 0.0),
        _row("freedoom/freedoom1_e1m1", 0.2, 0.1, 0.0),
    ]
    table = by_source(rows)
    assert table["openmsx"]["n"] == 2 and not table["openmsx"]["held_out_whole"]
    assert table["openmsx"]["ours"] == {"f_measure": 0.75, "cmlt": 0.5, "acc1": 0.5}
    assert table["freedoom"]["held_out_whole"] and table["freedoom"]["n"] == 1
    lines = source_lines(rows)
    assert any(
        line.startswith("| freedoom | whole source | 1 | 0.200 / 0.100 / 0.000") for line in lines
    )
