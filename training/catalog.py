"""The track catalogue (data/catalog.json) and the deterministic train/eval split.

Split: tracks are grouped by album (a soundtrack's sub-folder, an immich mood, one librosa
recording each; wesnoth is one album); within each source-and-album group they are sorted by
SHA-1 of the track id, and every EVAL_EVERY-th (positions 0, 5, 10, ...) is held out for
evaluation. Whole tracks are held out; nothing of an eval track is ever trained on.
For librosa (one track per album) the split is taken over the source instead.

That "album" protocol measures memory of the training soundtracks as much as generalisation.
The "source" protocol evaluates on whole soundtracks that are never trained on
(training.sources.HELD_OUT_SOURCES); the training set is the same for both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from training.sources import HELD_OUT_SOURCES

EVAL_EVERY = 5
Protocol = Literal["album", "source"]


@dataclass(frozen=True)
class Track:
    id: str
    source: str
    album: str
    license: str = ""
    mood: str | None = None
    style: str | None = None
    cache: str = ""
    seconds: float = 0.0
    # Where it came from ("debian:<package>", "pypi:<package>", ...) and SHA-256 of its file.
    package: str = ""
    sha256: str = ""


def save_catalog(tracks: list[Track], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(t) for t in tracks], indent=1))


def load_catalog(path: Path) -> list[Track]:
    return [Track(**d) for d in json.loads(path.read_text())]


def _digest(track_id: str) -> str:
    return hashlib.sha1(track_id.encode()).hexdigest()


def split(tracks: list[Track], protocol: Protocol = "album") -> tuple[list[Track], list[Track]]:
    """(train, eval), deterministic and by whole track (see module doc).

    train is the same under both protocols: no track of HELD_OUT_SOURCES and no track held out
    by album. eval is the album-held-out tracks of the training sources ("album") or every
    track of the held-out sources ("source").
    """
    known = [t for t in tracks if t.source not in HELD_OUT_SOURCES]
    groups: dict[str, list[Track]] = {}
    for t in known:
        key = t.source if t.source == "librosa" else t.album
        groups.setdefault(key, []).append(t)
    held: set[str] = set()
    for members in groups.values():
        ordered = sorted(members, key=lambda t: _digest(t.id))
        held.update(t.id for t in ordered[::EVAL_EVERY])
    train = [t for t in known if t.id not in held]
    if protocol == "source":
        return train, [t for t in tracks if t.source in HELD_OUT_SOURCES]
    return train, [t for t in known if t.id in held]


def load_audio(track: Track, cache_dir: Path) -> NDArray[np.float16]:
    """Mono float16 samples at 22050 Hz, memory-mapped."""
    audio: NDArray[np.float16] = np.load(cache_dir / track.cache, mmap_mode="r")
    return audio
