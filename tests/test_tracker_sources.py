"""Tracker-module sources: only their modules are taken, and each is rendered once through,
the same way every time, to 22050 Hz mono FLAC that the catalogue names after the module."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import SAMPLE_RATE_HZ, build_catalog, render_module
from training.sources import PackageSource, package_source

needs_openmpt = pytest.mark.skipif(
    shutil.which("openmpt123") is None, reason="openmpt123 is not installed (`make system`)"
)

ROWS, TICKS_PER_ROW, TICK_S = 64, 6, 0.02  # ProTracker defaults: speed 6, 125 BPM


def write_mod(path: Path, patterns: int = 1) -> None:
    """A 4-channel ProTracker module: one looped square-wave sample, struck on channel 1 at
    every 8th row of each pattern (period 214, ProTracker's C-3), the patterns played once."""
    sample = np.where(np.arange(64) < 32, 100, -100).astype(np.int8).tobytes()
    header = struct.pack(">22sHBBHH", b"square", len(sample) // 2, 0, 64, 0, len(sample) // 2)
    empty = struct.pack(">22sHBBHH", b"", 0, 0, 0, 0, 1)
    order = bytes(range(patterns)) + bytes(128 - patterns)
    note = bytes([0x00 | (214 >> 8), 214 & 0xFF, 0x10, 0x00])  # sample 1, no effect
    rows = b"".join((note if r % 8 == 0 else bytes(4)) + bytes(12) for r in range(ROWS))
    path.write_bytes(
        b"test".ljust(20, b"\0") + header + empty * 30 + bytes([patterns, 127]) + order
        + b"M.K." + rows * patterns + sample
    )  # fmt: skip


def test_a_tracker_source_takes_its_modules_and_nothing_else(tmp_path: Path) -> None:
    music = tmp_path / "usr/share/games/x/music"
    music.mkdir(parents=True)
    for name in ("a.mod", "b.XM", "c.it", "d.s3m", "e.stm", "f.ogg", "g.txt", "h"):
        (music / name).write_bytes(b"")
    source = PackageSource("x", "x-data", ("usr/share/games/x/music",), "GPL", "", tracker=True)
    assert [f.name for f in source.music_files(tmp_path)] == [
        "a.mod", "b.XM", "c.it", "d.s3m", "e.stm"
    ]
    recordings = PackageSource("x", "x-data", ("usr/share/games/x/music",), "GPL", "")
    assert [f.name for f in recordings.music_files(tmp_path)] == ["f.ogg", "h"]


@needs_openmpt
def test_a_module_renders_once_through_to_mono_flac_at_the_model_rate(tmp_path: Path) -> None:
    module = tmp_path / "song.mod"
    write_mod(module, patterns=2)
    out = render_module(module)
    assert out == tmp_path / "song.mod.flac"
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.format) == (SAMPLE_RATE_HZ, 1, "FLAC")
    # Two patterns of 64 rows, played once (libopenmpt adds a 0.1 s tail), not looped back.
    played = 2 * ROWS * TICKS_PER_ROW * TICK_S
    assert played <= info.duration <= played + 0.2
    audio, _ = sf.read(out, dtype="float32")
    assert np.sqrt(np.mean(audio**2)) > 0.01  # the notes sound
    first = out.read_bytes()
    render_module(module)
    assert out.read_bytes() == first  # no dither: the same bytes, so the same content hash


@needs_openmpt
def test_the_catalogue_names_a_rendered_module_after_it(tmp_path: Path) -> None:
    # What fetch_debian leaves for a tracker source: the rendering beside the copyright file.
    folder = tmp_path / "audio" / "tecnoballz"
    folder.mkdir(parents=True)
    write_mod(tmp_path / "area1.mod", patterns=6)  # 46 s: a song, not a jingle
    shutil.copy2(render_module(tmp_path / "area1.mod"), folder)
    (folder / "copyright").write_text("Format: test\n")
    tracks = build_catalog(tmp_path, shared=None, immich=False, jobs=1)
    assert [t.id for t in tracks] == ["tecnoballz/area1.mod"]
    assert tracks[0].seconds == pytest.approx(6 * ROWS * TICKS_PER_ROW * TICK_S, abs=0.2)
    assert package_source("tecnoballz").license in tracks[0].license
