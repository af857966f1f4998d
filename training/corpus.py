"""The training corpus on disk: fetching the allowed packages' music, decoding it once, and
the catalogue (data/catalog.json) of every track with its source, licence and content hash.

`make data` runs it through scripts/fetch_data.py; see there for the sources.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from segue.files import sha256_of
from training.catalog import Track, save_catalog
from training.sources import MIN_TRACK_SECONDS, PACKAGES, PackageSource

SAMPLE_RATE_HZ = 22050
IMMICH_LICENSE = "see the immich-memories-music package metadata"


def fetch_debian(source: PackageSource, audio_dir: Path) -> None:
    """Unpacks the package's music files (and its copyright file) into audio_dir/<source>."""
    dest = audio_dir / source.name
    if (dest / "copyright").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["apt-get", "download", source.package], cwd=tmp, check=True, capture_output=True
        )
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        for f in source.music_files(unpacked):
            folder = next(unpacked / d for d in source.music_dirs if f.is_relative_to(unpacked / d))
            if source.tracker:
                f = render_module(f)  # beside the module, so in the same folder
            target = dest / f.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        # Written last: its presence marks the source as complete.
        shutil.copy2(unpacked / "usr/share/doc" / source.package / "copyright", dest / "copyright")


def render_module(module: Path) -> Path:
    """Renders a tracker module once through to `<module>.flac` beside it (22050 Hz mono
    16-bit, no dither: the same file every time) with Debian's openmpt123; returns its path.
    The song is played to its end once: a module's loop back is not rendered again."""
    subprocess.run(
        [
            "openmpt123", "--render", "--quiet", "--force", "--samplerate", str(SAMPLE_RATE_HZ),
            "--channels", "1", "--no-float", "--dither", "0", "--repeat", "0",
            "--output-type", "flac", "--", str(module),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return module.with_name(module.name + ".flac")


def _catalogue(
    audio_dir: Path,
    shared: Path | None,
    fma: Path | None,
    fma_size: str,
    immich: bool = True,
) -> list[tuple[Track, Path]]:
    found: list[tuple[Track, Path]] = []
    for source in PACKAGES:
        base = audio_dir / source.name
        for f in sorted(p for p in base.rglob("*") if p.is_file() and p.name != "copyright"):
            rel = f.relative_to(base).with_suffix("")
            album = rel.parts[0] if len(rel.parts) > 1 else source.name
            track = Track(
                id=f"{source.name}/{rel.as_posix()}",
                source=source.name,
                album=f"{source.name}/{album}",
                license=f"{source.license} (Debian {source.package}, see its copyright)",
                package=f"debian:{source.package}",
            )
            found.append((track, f))
    from immich_memories_music import tracks_dir

    for opus in sorted(Path(tracks_dir()).rglob("*.opus")) if immich else []:
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
                    license=IMMICH_LICENSE,
                    package="pypi:immich-memories-music",
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
                        package="shared:music/librosa",
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


def _cache(track: Track, path: Path, cache_dir: Path) -> Track | None:
    """The track with its decoded cache, seconds and content hash; None if it will not decode."""
    npy = cache_dir / (track.id.replace("/", "__") + ".npy")
    if not npy.exists():
        try:
            audio = _decode(path)
        except subprocess.CalledProcessError as e:
            print(f"skipped {path}: ffmpeg could not decode it ({e.stderr.decode()[-200:]!r})")
            return None
        tmp = npy.with_suffix(".tmp.npy")
        np.save(tmp, audio.astype(np.float16))
        tmp.replace(npy)
    n = np.load(npy, mmap_mode="r").shape[0]
    fields = {**track.__dict__, "cache": npy.name, "seconds": n / SAMPLE_RATE_HZ}
    return Track(**{**fields, "sha256": sha256_of(path)})


def keep_songs(tracks: list[Track | None]) -> list[Track]:
    """Decoded tracks of at least MIN_TRACK_SECONDS, each content hash once (first kept)."""
    seen: set[str] = set()
    kept: list[Track] = []
    for t in tracks:
        if t is None or t.seconds < MIN_TRACK_SECONDS or t.sha256 in seen:
            continue
        seen.add(t.sha256)
        kept.append(t)
    return kept


def build_catalog(
    data: Path,
    shared: Path | None,
    fma: Path | None = None,
    fma_size: str = "small",
    jobs: int = 2,
    immich: bool = True,
) -> list[Track]:
    """Decodes every fetched file under data/audio into data/cache and writes the catalogue."""
    cache_dir = data / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = _catalogue(data / "audio", shared, fma, fma_size, immich)
    with ThreadPoolExecutor(jobs) as pool:
        tracks = keep_songs(list(pool.map(lambda tp: _cache(tp[0], tp[1], cache_dir), found)))
    save_catalog(tracks, data / "catalog.json")
    return tracks
