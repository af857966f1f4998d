"""Fetches the training/evaluation music into data/ (gitignored) and decodes it once.

Sources (and only these):
- ../shared/music/librosa/*.ogg when present (8 recordings, CC-BY / CC-BY-NC / PD);
- Debian packages wesnoth-1.16-music and supertux-data (GPL-2+ / CC-BY-SA music), fetched with
  `apt-get download` and unpacked with `dpkg-deb -x` (no install, works as root);
- the PyPI package immich-memories-music (labels: mood = folder, style = file name);
- a local copy of FMA when given with --fma (see training/fma.py).

Writes data/audio/<source>/... (the original files, music only, with the packages' copyright
files), data/cache/<track>.npy (mono float16 at 22050 Hz) and data/catalog.json.
Run: python scripts/fetch_data.py  (or `make data`). Idempotent: existing outputs are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.catalog import Track, save_catalog  # noqa: E402

SAMPLE_RATE_HZ = 22050
DEBIAN = {
    "wesnoth": ("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music"),
    "supertux": ("supertux-data", "usr/share/games/supertux2/music"),
}
LICENSES = {
    "wesnoth": "GPL-2+ (Debian package wesnoth-1.16-music, see copyright)",
    "supertux": "GPL-2+/CC-BY-SA (Debian package supertux-data, see copyright)",
    "immich": "see the immich-memories-music package metadata",
}


def _fetch_debian(source: str, audio_dir: Path) -> None:
    package, music_path = DEBIAN[source]
    dest = audio_dir / source
    if dest.exists() and any(dest.rglob("*.ogg")):
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        for ogg in sorted((unpacked / music_path).rglob("*.ogg")):
            target = dest / ogg.relative_to(unpacked / music_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ogg, target)
        copyright_file = unpacked / "usr/share/doc" / package / "copyright"
        if copyright_file.exists():
            shutil.copy2(copyright_file, dest / "copyright")


def _catalogue(
    audio_dir: Path, shared: Path | None, fma: Path | None, fma_size: str
) -> list[tuple[Track, Path]]:
    found: list[tuple[Track, Path]] = []
    for source in DEBIAN:
        base = audio_dir / source
        for ogg in sorted(base.rglob("*.ogg")):
            rel = ogg.relative_to(base).with_suffix("")
            album = rel.parts[0] if len(rel.parts) > 1 else source
            found.append(
                (
                    Track(
                        id=f"{source}/{rel.as_posix()}",
                        source=source,
                        album=f"{source}/{album}",
                        license=LICENSES[source],
                    ),
                    ogg,
                )
            )
    from immich_memories_music import tracks_dir

    for opus in sorted(Path(tracks_dir()).rglob("*.opus")):
        mood = opus.parent.name
        style = "electronic" if "_electronic" in opus.stem else "acoustic"
        found.append(
            (
                Track(
                    id=f"immich/{mood}/{opus.stem}",
                    source="immich",
                    album=f"immich/{mood}",
                    mood=mood,
                    style=style,
                    license=LICENSES["immich"],
                ),
                opus,
            )
        )
    if shared is not None and shared.is_dir():
        for ogg in sorted(shared.glob("*.ogg")):
            note = ogg.with_suffix(".txt")
            lic = note.read_text().strip().splitlines()[-1] if note.exists() else "see shared/"
            # Unrelated recordings: each is its own album, and "librosa" is not a pack.
            found.append(
                (
                    Track(
                        id=f"librosa/{ogg.stem}",
                        source="librosa",
                        album=f"librosa/{ogg.stem}",
                        license=lic,
                    ),
                    ogg,
                )
            )
    if fma is not None:
        # FMA for users who have it locally (never downloaded here).
        from training.fma import load_tracks, to_catalog

        fma_tracks = load_tracks(fma, fma_size)
        found += zip(to_catalog(fma_tracks), [t.path for t in fma_tracks], strict=True)
    return found


def _decode(path: Path) -> np.ndarray:
    out = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-i",
            str(path),
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE_HZ),
            "-f",
            "f32le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(out, dtype=np.float32)


def _cache(track: Track, path: Path, cache_dir: Path) -> Track:
    npy = cache_dir / (track.id.replace("/", "__") + ".npy")
    if not npy.exists():
        audio = _decode(path)
        tmp = npy.with_suffix(".tmp.npy")
        np.save(tmp, audio.astype(np.float16))
        tmp.replace(npy)
    n = np.load(npy, mmap_mode="r").shape[0]
    return Track(**{**track.__dict__, "cache": npy.name, "seconds": n / SAMPLE_RATE_HZ})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "music" / "librosa")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--fma", type=Path, default=None, help="root of a local FMA copy (optional)")
    p.add_argument("--fma-size", default="small", help="which fma_<size> audio folder to use")
    a = p.parse_args()
    audio_dir, cache_dir = a.data / "audio", a.data / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for source in DEBIAN:
        _fetch_debian(source, audio_dir)
    found = _catalogue(audio_dir, a.shared, a.fma, a.fma_size)
    with ThreadPoolExecutor(a.jobs) as pool:
        tracks = list(pool.map(lambda tp: _cache(tp[0], tp[1], cache_dir), found))
    save_catalog(tracks, a.data / "catalog.json")
    by_source: dict[str, float] = {}
    for t in tracks:
        by_source[t.source] = by_source.get(t.source, 0.0) + t.seconds
    print(json.dumps({k: f"{v / 60:.1f} min" for k, v in by_source.items()}))


if __name__ == "__main__":
    main()
