"""Human odd-one-out triplets from Segue Studio: reading the exports, splitting, clip audio.

Two formats are read (see segue/studio/exports.py):

- the Studio's JSON export (`answers_json`, preferred): every answer names its three clips
  (song id, start and duration in seconds), so the exact audio the annotator heard is used.
  Only RANDOM and ACTIVE answers are kept, as in the CSV exports (GOLD pages test annotators,
  not songs; a REPEAT would count one judgement twice), and answers of flagged annotators are
  left out unless asked for.
- MECOMP's triplet CSV (`song1,song2,song3,anchor,positive`, 1-based): song level only, so each
  song is heard as one clip of MIDDLE_CLIP_S seconds from its middle (the whole song when
  shorter). The CSV names no annotator.

Song ids are the matcher's: for `segue index DIR` the file path relative to DIR, so the audio
is `DIR/<song id>`. Where no such file exists, a song id that is the stem of exactly one audio
file under DIR is taken to name it (the demo indexes songs by file stem).

Split (`split`): the triplets are grouped, either by question (`triplet`: the same three clips,
in any order, are one group, so a question answered twice never lands on both sides) or by
annotator (`annotator`: JSON only; a held-out annotator's answers are all held out). Groups are
sorted by SHA-1 of `"<seed>\\0<group key>"` and the first round(held_out * groups) of them are
held out (at least one, and at least one group left to fine-tune on, where there are two or
more). The defaults are SPLIT_SEED = 13 and HELD_OUT_FRACTION = 0.2, by triplet. The split
depends only on the set of groups, not on the order of the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from segue.audio import decode
from segue.music import AUDIO_SUFFIXES
from segue.studio.exports import JSON_FORMAT, JSON_VERSION, MECOMP_HEADER, TRAINING_KINDS
from training.frontend import SAMPLE_RATE_HZ, WINDOW_SAMPLES

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
SplitBy = Literal["triplet", "annotator"]

# Length (s) of the clip heard from a song's middle where the export gives no clip times
# (MECOMP's CSV); the Studio's default clip length.
MIDDLE_CLIP_S = 12.0
SPLIT_SEED = 13
HELD_OUT_FRACTION = 0.2
SPLIT_BY: tuple[SplitBy, ...] = ("triplet", "annotator")


@dataclass(frozen=True)
class HumanClip:
    """`duration_s` seconds of `song_id` from `start_s`; both None: the song's middle."""

    song_id: str
    start_s: float | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class HumanTriplet:
    """Three clips in page order and the slot (0..2) the annotator picked as the odd one out.

    `annotator` is None where the export does not say (MECOMP's CSV); `row` is the answer's
    1-based position in the file (for messages).
    """

    clips: tuple[HumanClip, HumanClip, HumanClip]
    odd: int
    annotator: str | None
    row: int

    def key(self) -> str:
        """The question, independent of slot order: its clips, sorted."""
        return json.dumps(sorted([c.song_id, c.start_s, c.duration_s] for c in self.clips))


# ---------------------------------------------------------------- reading the exports


def read_human_triplets(path: Path, keep_flagged: bool = False) -> list[HumanTriplet]:
    """The triplets of a Studio JSON export or a MECOMP CSV (told apart by content)."""
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("{"):
            return parse_studio_json(text, keep_flagged)
        return parse_mecomp_csv(text)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def parse_studio_json(text: str, keep_flagged: bool = False) -> list[HumanTriplet]:
    """The RANDOM and ACTIVE answers of `answers_json`'s document, flagged ones left out
    unless `keep_flagged`."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise ValueError(f"not a Segue Studio export (format {JSON_FORMAT!r} expected)")
    if document.get("version") != JSON_VERSION:
        raise ValueError(f"Studio export version {document.get('version')!r}; this reader "
                         f"knows version {JSON_VERSION}")
    kinds = {k.value for k in TRAINING_KINDS}
    triplets = []
    for row, answer in enumerate(document.get("answers", []), start=1):
        if answer.get("kind") not in kinds or (answer.get("flagged") and not keep_flagged):
            continue
        triplets.append(_json_triplet(answer, row))
    return triplets


def _json_triplet(answer: dict[str, Any], row: int) -> HumanTriplet:
    clips = answer.get("clips")
    if not isinstance(clips, list) or len(clips) != 3:
        raise ValueError(f"answer {row}: three clips expected")
    parsed = []
    for clip in clips:
        start, duration = float(clip["start_s"]), float(clip["duration_s"])
        if not (math.isfinite(start) and start >= 0 and math.isfinite(duration)
                and duration > 0):
            raise ValueError(f"answer {row}: a clip needs start_s >= 0 and duration_s > 0")
        parsed.append(HumanClip(_song_id(clip.get("song_id"), row), start, duration))
    pick = answer.get("pick")
    if pick not in (0, 1, 2) or isinstance(pick, bool):
        raise ValueError(f"answer {row}: pick must be 0, 1 or 2, got {pick!r}")
    return HumanTriplet((parsed[0], parsed[1], parsed[2]), int(pick),
                        str(answer.get("annotator_id") or "") or None, row)


def parse_mecomp_csv(text: str) -> list[HumanTriplet]:
    """MECOMP's CSV: the odd one out is the song that is neither `anchor` nor `positive`."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != MECOMP_HEADER:
        raise ValueError(f"a MECOMP triplet CSV starts with {','.join(MECOMP_HEADER)}")
    triplets = []
    for row, cells in enumerate(rows[1:], start=1):
        if not cells:
            continue
        if len(cells) != 5:
            raise ValueError(f"row {row}: 5 columns expected, got {len(cells)}")
        try:
            kept = {int(cells[3]), int(cells[4])}
        except ValueError:
            raise ValueError(f"row {row}: anchor and positive must be 1, 2 or 3") from None
        if len(kept) != 2 or not kept <= {1, 2, 3}:
            raise ValueError(f"row {row}: anchor and positive must be two of 1, 2 and 3")
        (odd,) = {1, 2, 3} - kept
        songs = [HumanClip(_song_id(s, row)) for s in cells[:3]]
        triplets.append(HumanTriplet((songs[0], songs[1], songs[2]), odd - 1, None, row))
    return triplets


def _song_id(value: object, row: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"row {row}: every clip needs a song id")
    return value


# ---------------------------------------------------------------- fine-tune / held-out split


def split(triplets: Sequence[HumanTriplet], by: SplitBy = "triplet",
          held_out: float = HELD_OUT_FRACTION, seed: int = SPLIT_SEED
          ) -> tuple[list[HumanTriplet], list[HumanTriplet]]:
    """(fine-tune, held-out), disjoint by group, in the given order (see the module doc)."""
    if by not in SPLIT_BY:
        raise ValueError(f"split by one of {', '.join(SPLIT_BY)}, not {by!r}")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {held_out}")
    if by == "annotator" and any(t.annotator is None for t in triplets):
        raise ValueError("splitting by annotator needs the Studio's JSON export (MECOMP's CSV "
                         "names no annotator); split by triplet instead")

    def group(t: HumanTriplet) -> str:
        return str(t.annotator) if by == "annotator" else t.key()

    keys = sorted({group(t) for t in triplets},
                  key=lambda k: hashlib.sha1(f"{seed}\0{k}".encode()).hexdigest())
    count = round(held_out * len(keys))
    if len(keys) >= 2:
        count = min(max(count, 1), len(keys) - 1)
    held = set(keys[:count])
    return ([t for t in triplets if group(t) not in held],
            [t for t in triplets if group(t) in held])


def index_triplets(triplets: Sequence[HumanTriplet]) -> tuple[list[HumanClip], IntArray,
                                                              IntArray]:
    """(distinct clips, [n, 3] clip indices per triplet, the n odd slots)."""
    index: dict[HumanClip, int] = {}
    rows = [[index.setdefault(c, len(index)) for c in t.clips] for t in triplets]
    return (list(index), np.array(rows, dtype=np.int64).reshape(-1, 3),
            np.array([t.odd for t in triplets], dtype=np.int64))


# ---------------------------------------------------------------- clip audio


class MusicFolder:
    """Song id -> audio file under `root` (see the module doc)."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"no such music folder: {root} (give the folder the "
                                    "songs were indexed from)")
        self.root = root.resolve()
        stems: dict[str, list[Path]] = {}
        for p in root.rglob("*"):
            if p.suffix.lower() in AUDIO_SUFFIXES:
                stems.setdefault(p.stem, []).append(p)
        self._by_stem = {s: ps[0] for s, ps in stems.items() if len(ps) == 1}

    def find(self, song_id: str) -> Path | None:
        """The song's file, or None."""
        path = (self.root / song_id).resolve()
        if path.is_relative_to(self.root) and path.is_file():
            return path
        return self._by_stem.get(song_id)


def load_clip_audio(clips: Iterable[HumanClip], music: MusicFolder) -> dict[HumanClip,
                                                                           FloatArray]:
    """Every clip as mono float32 PCM at the model's rate (each song decoded once).

    FileNotFoundError naming the missing songs (all checked before any is decoded);
    ValueError for a clip shorter than one model window (1 s)."""
    by_song: dict[str, list[HumanClip]] = {}
    for clip in clips:
        by_song.setdefault(clip.song_id, []).append(clip)
    files = {song: music.find(song) for song in by_song}
    missing = sorted(song for song, path in files.items() if path is None)
    if missing:
        shown = ", ".join(repr(s) for s in missing[:5])
        raise FileNotFoundError(f"{len(missing)} of {len(files)} songs not found under "
                                f"{music.root}: {shown}{', ...' if len(missing) > 5 else ''}")
    audio: dict[HumanClip, FloatArray] = {}
    for song, wanted in sorted(by_song.items()):
        path = files[song]
        assert path is not None
        pcm = decode(path, SAMPLE_RATE_HZ)
        for clip in wanted:
            audio[clip] = cut(pcm, clip)
    return audio


def cut(pcm: FloatArray, clip: HumanClip) -> FloatArray:
    """The clip's samples of a whole song's `pcm` (the middle for a song-level clip)."""
    if clip.start_s is None or clip.duration_s is None:
        length = min(pcm.size, round(MIDDLE_CLIP_S * SAMPLE_RATE_HZ))
        start = (pcm.size - length) // 2
    else:
        start = round(clip.start_s * SAMPLE_RATE_HZ)
        length = round(clip.duration_s * SAMPLE_RATE_HZ)
    out = np.ascontiguousarray(pcm[start : start + length], dtype=np.float32)
    if out.size < WINDOW_SAMPLES:
        raise ValueError(f"clip {clip} holds {out.size / SAMPLE_RATE_HZ:.2f} s of audio; the "
                         "model needs at least 1 s")
    return out


__all__ = [
    "HELD_OUT_FRACTION",
    "MIDDLE_CLIP_S",
    "SPLIT_BY",
    "SPLIT_SEED",
    "HumanClip",
    "HumanTriplet",
    "MusicFolder",
    "cut",
    "index_triplets",
    "load_clip_audio",
    "parse_mecomp_csv",
    "parse_studio_json",
    "read_human_triplets",
    "split",
]
