"""Where the demo, the load generator and the benchmarks find real music."""

from __future__ import annotations

from pathlib import Path

AUDIO_SUFFIXES = {".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a", ".aac", ".wma", ".aiff"}


def bundled_tracks_dir() -> Path:
    """The royalty-free tracks of the PyPI package immich-memories-music."""
    try:
        from immich_memories_music import tracks_dir
    except ImportError as e:
        raise RuntimeError(
            "no music folder given and immich-memories-music is not installed "
            "(pip install immich-memories-music)"
        ) from e
    return Path(tracks_dir())


def find_music(folder: Path | None = None) -> list[Path]:
    """Audio files under a folder (default: the bundled tracks), in a stable order."""
    root = folder if folder is not None else bundled_tracks_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"no such music folder: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no audio files under {root}")
    return files
