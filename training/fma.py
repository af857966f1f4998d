"""Loader for the Free Music Archive dataset (FMA), for users who have it locally.

Layout (as distributed): <root>/fma_metadata/tracks.csv (three header rows: section, field,
then "track_id"), <root>/fma_metadata/genres.csv, and audio in <root>/fma_<size>/NNN/NNNNNN.mp3
where NNN is the first three digits of the zero-padded track id.

Triplets:
- from the genre hierarchy: anchor and positive share a top-level genre (and, when possible, a
  finer genre), the negative has another top-level genre;
- from people: a CSV with columns song1,song2,song3,anchor,positive where anchor and positive
  are 1-based positions among the three songs (as MECOMP's study collected them); the third
  song is the negative.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.catalog import Track


@dataclass(frozen=True)
class FmaTrack:
    track_id: int
    path: Path
    genre_top: str | None
    genres: tuple[int, ...]
    album_id: int | None
    artist: str
    title: str
    subset: str
    split: str
    license: str


@dataclass(frozen=True)
class Triplet:
    anchor: int
    positive: int
    negative: int


def audio_path(root: Path, size: str, track_id: int) -> Path:
    tid = f"{track_id:06d}"
    return root / f"fma_{size}" / tid[:3] / f"{tid}.mp3"


def _int_or_none(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:
        return None


def load_tracks(root: Path, size: str = "small") -> list[FmaTrack]:
    """Tracks whose audio file exists under <root>/fma_<size>/, in track-id order."""
    with (root / "fma_metadata" / "tracks.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        sections = next(reader)
        fields = next(reader)
        next(reader)  # "track_id,,,..."
        # Sections are written once per column in FMA's file; carry them forward when blank.
        keys, current = [], ""
        for sec, field in zip(sections, fields, strict=True):
            current = sec or current
            keys.append((current, field))
        col = {k: i for i, k in enumerate(keys)}
        tracks = []
        for row in reader:
            if not row:
                continue
            tid = int(row[0])
            path = audio_path(root, size, tid)
            if not path.exists():
                continue

            def get(section: str, field: str, r: list[str] = row) -> str:
                i = col.get((section, field))
                return r[i] if i is not None and i < len(r) else ""

            genres_raw = get("track", "genres_all") or get("track", "genres") or "[]"
            tracks.append(
                FmaTrack(
                    track_id=tid,
                    path=path,
                    genre_top=get("track", "genre_top") or None,
                    genres=tuple(int(g) for g in ast.literal_eval(genres_raw)),
                    album_id=_int_or_none(get("album", "id")),
                    artist=get("artist", "name"),
                    title=get("track", "title"),
                    subset=get("set", "subset"),
                    split=get("set", "split"),
                    license=get("track", "license"),
                )
            )
    return tracks


def load_genre_parents(root: Path) -> dict[int, int]:
    """genre_id -> parent genre_id (0 for top-level genres)."""
    with (root / "fma_metadata" / "genres.csv").open(newline="", encoding="utf-8") as f:
        return {int(r["genre_id"]): int(r["parent"]) for r in csv.DictReader(f)}


def to_catalog(tracks: list[FmaTrack]) -> list[Track]:
    """Catalogue entries (source "fma", album = FMA album, style = top-level genre)."""
    return [
        Track(
            id=f"fma/{t.track_id:06d}",
            source="fma",
            album=f"fma/{t.album_id}" if t.album_id is not None else f"fma/{t.track_id:06d}",
            license=t.license,
            style=t.genre_top,
        )
        for t in tracks
    ]


def genre_triplets(
    tracks: list[FmaTrack], n: int, seed: int, parents: dict[int, int] | None = None
) -> list[Triplet]:
    """Seeded triplets from the genre hierarchy (see module doc); `parents` from
    load_genre_parents() lets positives share a sub-genre, not just the top-level one."""
    parents = parents or {}
    rng = np.random.default_rng(seed)
    by_top: dict[str, list[FmaTrack]] = {}
    for t in tracks:
        if t.genre_top:
            by_top.setdefault(t.genre_top, []).append(t)
    tops = sorted(g for g, members in by_top.items() if len(members) >= 2)
    if not tops or len(by_top) < 2:
        return []
    out = []
    for _ in range(n):
        top = tops[rng.integers(len(tops))]
        members = by_top[top]
        anchor = members[rng.integers(len(members))]
        finer = [
            m
            for m in members
            if m is not anchor
            and any(parents.get(g, 0) != 0 for g in set(m.genres) & set(anchor.genres))
        ]
        pool = finer or [m for m in members if m is not anchor]
        positive = pool[rng.integers(len(pool))]
        others = [t for g, ms in sorted(by_top.items()) if g != top for t in ms]
        negative = others[rng.integers(len(others))]
        out.append(Triplet(anchor.track_id, positive.track_id, negative.track_id))
    return out


def human_triplets(csv_path: Path) -> list[Triplet]:
    """Triplets from a song1,song2,song3,anchor,positive CSV (1-based positions)."""
    out = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            songs = [int(r["song1"]), int(r["song2"]), int(r["song3"])]
            a, p = int(r["anchor"]), int(r["positive"])
            if not (1 <= a <= 3 and 1 <= p <= 3) or a == p:
                raise ValueError(f"{csv_path}:{line}: anchor/positive must be distinct 1..3")
            neg = ({1, 2, 3} - {a, p}).pop()
            out.append(Triplet(songs[a - 1], songs[p - 1], songs[neg - 1]))
    return out
