"""Real analyses for the export tests: real songs (immich-memories-music) and a held tone,
analysed in-process with the real model. Helpers only; the tests are in test_export_*.py."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np

from segue.audio import decode
from segue.cli.common import message_to_json
from segue.v1 import common_pb2, matcher_pb2

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 22050
# Songs whose analysed beats lie on one steady grid (more than 95% within 35 ms).
STEADY_SONGS = ("energetic_electronic_2", "happy_electronic_2", "tender_acoustic_s411")
# The tables and columns the Mixxx export touches, as Mixxx's res/schema.xml builds them
# (track_locations and cues from revision 1, cues.color from 27; library from revision 3 with
# key from 7, keys/keys_version/keys_sub_version from 18 and key_id from 19).
MIXXX_SCHEMA = """
CREATE TABLE track_locations (
  id INTEGER PRIMARY KEY AUTOINCREMENT, location varchar(512) UNIQUE, filename varchar(512),
  directory varchar(512), filesize INTEGER, fs_deleted INTEGER, needs_verification INTEGER);
CREATE TABLE library (
  id INTEGER PRIMARY KEY AUTOINCREMENT, artist varchar(64), title varchar(64),
  album varchar(64), year varchar(16), genre varchar(64), tracknumber varchar(3),
  location INTEGER REFERENCES track_locations(location), comment varchar(256),
  url varchar(256), duration FLOAT, bitrate INTEGER, samplerate INTEGER, cuepoint INTEGER,
  bpm FLOAT, wavesummaryhex BLOB, channels INTEGER, datetime_added DEFAULT CURRENT_TIMESTAMP,
  mixxx_deleted INTEGER, played INTEGER, header_parsed INTEGER DEFAULT 0,
  key varchar(8) DEFAULT '', keys BLOB, keys_version TEXT, keys_sub_version TEXT,
  key_id INTEGER DEFAULT 0);
CREATE TABLE cues (
  id INTEGER PRIMARY KEY AUTOINCREMENT, track_id INTEGER NOT NULL REFERENCES library(id),
  type INTEGER DEFAULT 0 NOT NULL, position INTEGER DEFAULT -1 NOT NULL,
  length INTEGER DEFAULT 0 NOT NULL, hotcue INTEGER DEFAULT -1 NOT NULL,
  label TEXT DEFAULT '' NOT NULL, color INTEGER DEFAULT 4294901760 NOT NULL);
"""
# A folder and file name with a space, non-ASCII letters, a dash and brackets.
AWKWARD_FOLDER = "Música nueva"
AWKWARD_NAME = "Björk – Jóga (live) #1.opus"


@cache
def _model():  # type: ignore[no-untyped-def]
    from segue.embedding.model import StreamModel

    return StreamModel(REPO / "models" / "segue_stream.onnx", provider="cpu", intra_threads=1)


def track_path(name: str) -> Path:
    """The packaged real song of that name."""
    from immich_memories_music import tracks_dir

    found = sorted(Path(tracks_dir()).rglob(f"{name}.opus"))
    assert found, f"no packaged song {name!r}"
    return found[0]


@cache
def _analysis_bytes(name: str) -> bytes:
    from segue.embedding.local import analyze_mono

    audio = decode(track_path(name), RATE_HZ)
    return analyze_mono(_model(), audio, RATE_HZ, name).SerializeToString()


def analysis_of(name: str) -> common_pb2.SongAnalysis:
    """The real analysis of a packaged song (a fresh copy each call)."""
    return common_pb2.SongAnalysis.FromString(_analysis_bytes(name))


@cache
def _tone_bytes() -> bytes:
    from segue.embedding.local import analyze_mono

    t = np.arange(20 * RATE_HZ) / RATE_HZ
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return analyze_mono(_model(), tone, RATE_HZ, "held-tone").SerializeToString()


def held_tone_analysis() -> common_pb2.SongAnalysis:
    """The real analysis of 20 s of a held 440 Hz tone: no beats."""
    return common_pb2.SongAnalysis.FromString(_tone_bytes())


def awkward_copy(name: str, folder: Path) -> Path:
    """A copy of a packaged song under a path with spaces and non-ASCII letters."""
    target = folder / AWKWARD_FOLDER / f"{name} {AWKWARD_NAME}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(track_path(name), target)
    return target


def metadata(path: Path, artist: str = "", album: str = "") -> matcher_pb2.SongMetadata:
    return matcher_pb2.SongMetadata(uri=str(path), title=path.stem, artist=artist, album=album)


def write_analysis_json(folder: Path, analysis: common_pb2.SongAnalysis, audio: Path) -> Path:
    """The analysis as `segue analyze --out-dir` writes it: protobuf JSON plus "file"."""
    folder.mkdir(parents=True, exist_ok=True)
    data = message_to_json(analysis)
    data["file"] = str(audio)
    out = folder / f"{analysis.song_id}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    return out
