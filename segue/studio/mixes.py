"""Mixes for the admin's mix viewer: folders of what `segue mix --playlist` wrote.

Each folder under the mixes folder (SEGUE_STUDIO_MIXES_DIR) is one mix, named by the folder:
its audio (SET.mp3, .ogg, .flac or .wav) with the JSON sheet beside it (SET.json, and
SET.cue). The sheet says where every song is heard, where every transition (seam) lies, and
since the "timeline" key (segue.mixing.continuous_mix.timeline_json) every song's gain curve,
beat grid and sections on the mix's time axis. Sheets without it still open: each song's gain
is then drawn as straight ramps over its overlaps, and marked approximate.

The waveform is computed once per audio file (decoded mono at PEAK_RATE_HZ) into PEAK_PAIRS
min/max pairs, kept in memory and in the cache folder, keyed by the file's size and mtime.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segue.audio import DecodeError, decode
from segue.files import write_atomically

MIX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MEDIA_TYPES = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac", ".wav": "audio/wav"}
PEAK_PAIRS = 2000
PEAK_RATE_HZ = 8000
# Longest mix whose waveform is computed (a bound on the memory one decode takes).
MAX_MIX_S = 6 * 3600.0


class MixError(ValueError):
    """A mix folder whose sheet cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class MixSection:
    start_s: float  # mix seconds
    end_s: float
    letter: str
    function: str


@dataclass(frozen=True)
class MixSong:
    """One song as the viewer draws it; every time is in mix seconds."""

    number: int
    title: str
    song_id: str
    start_s: float  # where it becomes the main song
    heard_from_s: float
    heard_until_s: float
    tempo_bpm: float
    gain: list[tuple[float, float]]  # (mix s, fade gain 0..1), straight lines between
    beats_s: list[float]
    beat_positions: list[int]  # 1 = downbeat, 0 = unknown
    sections: list[MixSection]


@dataclass(frozen=True)
class Seam:
    """The transition from song `number` into song `number + 1`: the thing rated."""

    number: int
    from_title: str
    to_title: str
    start_s: float  # the overlap, mix seconds
    end_s: float
    length_reason: str
    beat_alignment_error_ms: float | None  # None: a free-time fade lines up no beats
    tempo_ratio: float


@dataclass(frozen=True)
class MixView:
    """A mix folder read: its audio and what its sheet says, ready to draw."""

    mix_id: str
    title: str
    audio: Path
    media_type: str
    duration_s: float
    loudness_lufs: float
    songs: list[MixSong]
    seams: list[Seam]
    approximate_gains: bool  # the sheet has no "timeline": gains are straight ramps

    def to_json(self, peaks: list[tuple[float, float]]) -> dict[str, Any]:
        """What /mixes/{id}/data.json answers: the sheet's view plus the waveform peaks."""
        return {
            "mix_id": self.mix_id,
            "title": self.title,
            "duration_s": self.duration_s,
            "loudness_lufs": self.loudness_lufs if math.isfinite(self.loudness_lufs) else None,
            "audio_url": f"/mixes/{self.mix_id}/audio",
            "approximate_gains": self.approximate_gains,
            "songs": [asdict(s) for s in self.songs],
            "seams": [asdict(s) for s in self.seams],
            "peaks": [list(p) for p in peaks],
        }


@dataclass(frozen=True)
class MixListing:
    """A line of the mix list: a mix that opens, or a folder that does not and why."""

    mix_id: str
    title: str = ""
    duration_s: float = 0.0
    songs: int = 0
    problem: str = ""


def valid_mix_id(mix_id: str) -> bool:
    """A folder name the viewer serves: letters, digits, . _ -, not starting with a dot."""
    return MIX_ID.fullmatch(mix_id) is not None


def find_audio(folder: Path) -> Path | None:
    """The folder's mix audio: the first audio file (by name) with a .json sheet beside it."""
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in MEDIA_TYPES and path.is_file() \
                and path.with_suffix(".json").is_file():
            return path
    return None


def load_mix(folder: Path) -> MixView:
    """Reads a mix folder; MixError says what is missing or malformed."""
    if not folder.is_dir():
        raise MixError(f"{folder.name} is not a folder")
    audio = find_audio(folder)
    if audio is None:
        raise MixError(f"{folder.name} holds no audio file with a .json sheet beside it")
    try:
        sheet = json.loads(audio.with_suffix(".json").read_text(encoding="utf-8"))
        return _view(folder.name, audio, sheet)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise MixError(f"{audio.with_suffix('.json').name} is not a mix sheet: {e}") from e


def _view(mix_id: str, audio: Path, sheet: dict[str, Any]) -> MixView:
    duration = _number(sheet["duration_s"])
    songs_in, transitions = sheet["songs"], sheet["transitions"]
    if not isinstance(songs_in, list) or not isinstance(transitions, list) or not songs_in:
        raise MixError("songs and transitions must be lists, with at least one song")
    if len(transitions) != len(songs_in) - 1:
        raise MixError(f"{len(songs_in)} songs need {len(songs_in) - 1} transitions, "
                       f"not {len(transitions)}")
    timeline = sheet.get("timeline")
    lanes = timeline["songs"] if isinstance(timeline, dict) else None
    if lanes is not None and len(lanes) != len(songs_in):
        raise MixError("the timeline has a lane per song")
    songs = [_song(i, s, transitions, duration, lanes[i] if lanes else None)
             for i, s in enumerate(songs_in)]
    seams = [_seam(t, songs) for t in transitions]
    return MixView(mix_id, audio.stem, audio, MEDIA_TYPES[audio.suffix.lower()], duration,
                   _number(sheet.get("loudness_lufs", math.nan)), songs, seams,
                   approximate_gains=lanes is None)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _song(i: int, song: dict[str, Any], transitions: list[dict[str, Any]], duration: float,
          lane: dict[str, Any] | None) -> MixSong:
    heard_from, heard_until = _number(song["heard_from_s"]), _number(song["heard_until_s"])
    if lane is not None:
        gain = [(_number(t), _number(g)) for t, g in lane["gain"]]
        beats = [_number(b) for b in lane.get("beats_s", [])]
        positions = [int(p) for p in lane.get("beat_positions", [0] * len(beats))]
        sections = [MixSection(_number(s["start_s"]), _number(s["end_s"]), str(s["letter"]),
                               str(s["function"])) for s in lane.get("sections", [])]
    else:
        gain, beats, positions, sections = _ramps(i, heard_from, heard_until, transitions), \
            [], [], []
    if len(positions) != len(beats):
        raise MixError(f"song {i + 1}: beat_positions and beats_s differ in length")
    return MixSong(int(song["number"]), str(song["title"]), str(song.get("song_id", "")),
                   _number(song["start_s"]), heard_from, min(heard_until, duration),
                   _number(song.get("tempo_bpm", 0.0)), gain, beats, positions, sections)


def _ramps(i: int, heard_from: float, heard_until: float,
           transitions: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """A song's gain as straight ramps over its overlaps (for sheets without a timeline)."""
    points = [(heard_from, 0.0 if i > 0 else 1.0)]
    if i > 0:
        points.append((_number(transitions[i - 1]["overlap_end_s"]), 1.0))
    if i < len(transitions):
        points += [(_number(transitions[i]["overlap_start_s"]), 1.0), (heard_until, 0.0)]
    else:
        points.append((heard_until, 1.0))
    return points


def _seam(t: dict[str, Any], songs: list[MixSong]) -> Seam:
    n = int(t["number"])
    if not 1 <= n < len(songs):
        raise MixError(f"transition number {n} is not between two songs")
    report = t.get("report", {})
    error = report.get("beat_alignment_error_ms")
    finite = isinstance(error, int | float) and math.isfinite(error)
    return Seam(n, songs[n - 1].title, songs[n].title, _number(t["overlap_start_s"]),
                _number(t["overlap_end_s"]), str(report.get("length_reason", "")),
                float(error) if finite else None, float(report.get("tempo_ratio", 1.0)))


FloatArray = npt.NDArray[np.float32]


def waveform_peaks(mono: FloatArray, pairs: int = PEAK_PAIRS) -> list[tuple[float, float]]:
    """(min, max) of the samples in each of `pairs` equal slices of the audio."""
    if mono.size == 0:
        return [(0.0, 0.0)] * pairs
    edges = np.linspace(0, mono.size, pairs + 1).astype(np.int64)
    starts = np.minimum(edges[:-1], mono.size - 1)  # reduceat needs starts inside the array
    lows = np.minimum.reduceat(mono, starts)
    highs = np.maximum.reduceat(mono, starts)
    return [(round(float(lo), 4), round(float(hi), 4)) for lo, hi in zip(lows, highs,
                                                                          strict=True)]


class MixLibrary:
    """The mixes folder: lists and opens mixes, and computes each waveform once."""

    def __init__(self, folder: Path, cache_dir: Path) -> None:
        self.folder = folder
        self.cache_dir = cache_dir
        self._peaks: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def listing(self) -> list[MixListing]:
        """Every folder of the mixes folder, by name, with its problem when it does not open."""
        if not self.folder.is_dir():
            return []
        rows = []
        for path in sorted(self.folder.iterdir()):
            if not path.is_dir() or not valid_mix_id(path.name):
                continue
            try:
                view = load_mix(path)
            except MixError as e:
                rows.append(MixListing(path.name, problem=str(e)))
                continue
            rows.append(MixListing(path.name, view.title, view.duration_s, len(view.songs)))
        return rows

    def open(self, mix_id: str) -> MixView | None:
        """The mix named `mix_id`; None when there is no such folder. MixError when its
        sheet cannot be read."""
        if not valid_mix_id(mix_id):
            return None
        folder = self.folder / mix_id
        if not folder.is_dir():
            return None
        return load_mix(folder)

    def peaks(self, view: MixView) -> list[tuple[float, float]]:
        """The mix's waveform as PEAK_PAIRS (min, max) pairs: from memory, the cache folder,
        or decoded once (one decode at a time)."""
        stat = view.audio.stat()
        key = (str(view.audio.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._peaks:
                return self._peaks[key]
            cache = self.cache_dir / f"{view.mix_id}.peaks.json"
            peaks = self._cached(cache, key)
            if peaks is None:
                try:
                    mono = decode(view.audio, PEAK_RATE_HZ, max_s=MAX_MIX_S)
                except DecodeError as e:
                    raise MixError(f"{view.audio.name} cannot be decoded: {e}") from e
                # Lossy codecs pad the end: the sheet's duration is the mix.
                mono = mono[: max(1, round(view.duration_s * PEAK_RATE_HZ))]
                peaks = waveform_peaks(mono)
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                write_atomically(cache, json.dumps({"key": list(key), "peaks": peaks}).encode())
            self._peaks[key] = peaks
            return peaks

    @staticmethod
    def _cached(cache: Path, key: tuple[str, int, int]) -> list[tuple[float, float]] | None:
        try:
            stored = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != list(key):
            return None
        return [(float(lo), float(hi)) for lo, hi in stored["peaks"]]


__all__ = ["MEDIA_TYPES", "PEAK_PAIRS", "MixError", "MixLibrary", "MixListing", "MixSection",
           "MixSong", "MixView", "Seam", "find_audio", "load_mix", "valid_mix_id",
           "waveform_peaks"]
