"""The track catalogue (data/catalog.json) and the deterministic train/eval split.

Split: tracks are grouped by album (a soundtrack's sub-folder, an immich mood, one librosa
recording each; wesnoth is one album); within each source-and-album group they are sorted by
SHA-1 of the track id, and every EVAL_EVERY-th (positions 0, 5, 10, ...) is held out for
evaluation. Whole tracks are held out; nothing of an eval track is ever trained on.
For librosa (one track per album) the split is taken over the source instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

EVAL_EVERY = 5


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


def save_catalog(tracks: list[Track], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(t) for t in tracks], indent=1))


def load_catalog(path: Path) -> list[Track]:
    return [Track(**d) for d in json.loads(path.read_text())]


def _digest(track_id: str) -> str:
    return hashlib.sha1(track_id.encode()).hexdigest()


def split(tracks: list[Track]) -> tuple[list[Track], list[Track]]:
    """(train, eval): deterministic, by whole track, stratified by album (see module doc)."""
    groups: dict[str, list[Track]] = {}
    for t in tracks:
        key = t.source if t.source == "librosa" else t.album
        groups.setdefault(key, []).append(t)
    held: set[str] = set()
    for members in groups.values():
        ordered = sorted(members, key=lambda t: _digest(t.id))
        held.update(t.id for t in ordered[::EVAL_EVERY])
    train = [t for t in tracks if t.id not in held]
    evaluation = [t for t in tracks if t.id in held]
    return train, evaluation


def load_audio(track: Track, cache_dir: Path) -> NDArray[np.float16]:
    """Mono float16 samples at 22050 Hz, memory-mapped."""
    audio: NDArray[np.float16] = np.load(cache_dir / track.cache, mmap_mode="r")
    return audio
