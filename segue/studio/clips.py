"""The clip cache: blind excerpts of library songs, cut, levelled and encoded once each.

A clip is `Clip.duration_s` seconds of a source file from `Clip.start_s`, as Ogg/Opus at
48 kHz stereo. Every clip is brought to the same integrated loudness (a plain gain, never
compression, and never so much that a peak would clip) so no song stands out by level alone,
and fades in and out over a few milliseconds so no clip starts or ends with a click. The
encoder reads raw PCM, so no tag of the source (title, artist) reaches the clip.

Files are named by a hash of the source (path, size, modification time), the excerpt and the
settings: a changed source or setting makes a new name, never a stale hit. Each file is
written to a temporary name and renamed when complete, so a reader (another thread, another
worker process) sees the whole clip or none; within one process, threads asking for the same
clip wait for one ffmpeg run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from segue.audio import ffmpeg_path
from segue.files import write_atomically
from segue.loudness import gain_to_target, integrated_lufs
from segue.studio.model import Clip

FloatArray = npt.NDArray[np.float32]

RATE_HZ = 48000
CHANNELS = 2
# Integrated loudness every clip is levelled to, LUFS (EBU R128 leaves headroom at -23;
# music excerpts listened to in a browser sit comfortably at -18).
TARGET_LUFS = -18.0
# No sample may exceed this after the gain, full scale 1.0 (about -1 dBFS: room for the codec).
PEAK_CEILING = 0.89
# Length of the fade in and of the fade out, seconds.
FADE_S = 0.03
# A clip may come out this much shorter than asked (seconds) before the source counts as
# ending too early: decoders may drop a frame's worth of samples at the end.
SHORT_TOLERANCE_S = 0.02
# Extra audio asked of ffmpeg past a cut's end, seconds, then trimmed: a seek into Ogg/Vorbis
# can land up to a packet (about 23 ms) late, and the cut would then end that much short.
CUT_SLACK_S = 0.1
# Lines of ffmpeg's error output a ClipError carries.
STDERR_LINES = 8


class ClipError(RuntimeError):
    """A clip could not be made: the source is missing or unreadable, or ffmpeg failed."""


@dataclass(frozen=True)
class ClipSettings:
    """How clips are encoded; part of every cache key."""

    bitrate_kbps: int = 96
    target_lufs: float = TARGET_LUFS
    fade_s: float = FADE_S


class ClipCache:
    """Ogg/Opus clips of source files, made on first request and kept in `folder`.

    Thread-safe. Several processes may share the folder: at worst two of them make the same
    clip at once, and the second rename replaces the first's identical file.
    """

    def __init__(self, folder: Path, *, bitrate_kbps: int = 96) -> None:
        if not 6 <= bitrate_kbps <= 510:
            raise ValueError(f"bitrate_kbps must be 6 to 510 (libopus), got {bitrate_kbps}")
        self.folder = folder
        self.settings = ClipSettings(bitrate_kbps=bitrate_kbps)
        self._locks = _KeyedLocks()

    def path(self, clip: Clip, source: Path) -> Path:
        """The cached clip file of `clip` cut from `source`, made first when missing.

        Raises ValueError for an excerpt that is not a finite, non-negative start and a
        positive duration, and ClipError when the source is missing, ends before the clip
        does, or ffmpeg fails (with the tail of ffmpeg's error output).
        """
        out = self._file(clip, source)
        if out.is_file():
            return out
        with self._locks.hold(out.name):
            if not out.is_file():  # another thread may have made it while this one waited
                self._store(out, render(clip, source, self.settings))
        return out

    def prepare(self, clip: Clip, source: Path) -> Path:
        """As `path`, for background work: the clip is cut without holding its lock, so a
        request never waits behind a background cut, which may run at a lower CPU priority
        and be starved by the very requests waiting for it. At worst a request cuts the same
        clip at once, and the later rename replaces the identical file."""
        out = self._file(clip, source)
        if out.is_file():
            return out
        data = render(clip, source, self.settings)
        if not out.is_file():
            self._store(out, data)
        return out

    def _file(self, clip: Clip, source: Path) -> Path:
        """Where the clip's file is or will be (ValueError for an impossible excerpt)."""
        _check_excerpt(clip)
        return self.folder / f"{self.key(clip, source)}.opus"

    def _store(self, out: Path, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(out, data)

    def key(self, clip: Clip, source: Path) -> str:
        """The cache key (hex) of `clip` from `source` as the file stands now."""
        resolved = source.resolve()
        try:
            stat = resolved.stat()
        except OSError as e:
            raise ClipError(f"cannot read the source {source}: {e.strerror}") from None
        fields = {
            "source": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "start_s": clip.start_s, "duration_s": clip.duration_s,
            "bitrate_kbps": self.settings.bitrate_kbps,
            "target_lufs": self.settings.target_lufs, "fade_s": self.settings.fade_s,
            "rate_hz": RATE_HZ, "channels": CHANNELS,
        }  # fmt: skip
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:40]


def _check_excerpt(clip: Clip) -> None:
    """ValueError unless the clip's start (s) is finite and >= 0 and its duration (s) > 0."""
    if not (math.isfinite(clip.start_s) and clip.start_s >= 0.0):
        raise ValueError(f"clip start must be a finite number of seconds >= 0, "
                         f"got {clip.start_s}")
    if not (math.isfinite(clip.duration_s) and clip.duration_s > 0.0):
        raise ValueError(f"clip duration must be a finite number of seconds > 0, "
                         f"got {clip.duration_s}")


def render(clip: Clip, source: Path, settings: ClipSettings) -> bytes:
    """The Ogg/Opus bytes of the clip: cut, levelled to the target loudness, faded."""
    pcm = cut(source, clip.start_s, clip.duration_s)
    got_s = pcm.shape[0] / RATE_HZ
    if got_s < clip.duration_s - SHORT_TOLERANCE_S:
        raise ClipError(f"{source.name} ends {got_s:.2f} s into the clip from "
                        f"{clip.start_s:.2f} s; the clip lasts {clip.duration_s:.2f} s")
    levelled = fade(level(pcm, settings.target_lufs), settings.fade_s)
    return encode_opus(levelled, settings.bitrate_kbps)


def cut(source: Path, start_s: float, duration_s: float) -> FloatArray:
    """`duration_s` seconds of `source` from `start_s` as float32 [frames, 2] at 48 kHz
    (fewer where the source ends sooner)."""
    raw = _run_ffmpeg(
        ["-ss", f"{start_s:.6f}", "-t", f"{duration_s + CUT_SLACK_S:.6f}", "-i", str(source),
         "-vn",
         "-ac", str(CHANNELS), "-ar", str(RATE_HZ), "-f", "f32le", "-acodec", "pcm_f32le",
         "pipe:1"],
        None, f"cut {source.name}",
    )  # fmt: skip
    frames = min(len(raw) // (4 * CHANNELS), round(duration_s * RATE_HZ))
    pcm = np.frombuffer(raw, dtype="<f4", count=frames * CHANNELS).reshape(frames, CHANNELS)
    if frames == 0:
        raise ClipError(f"{source.name} has no audio from {start_s:.2f} s")
    return pcm


def level(pcm: FloatArray, target_lufs: float) -> FloatArray:
    """`pcm` ([frames, channels]) with one gain toward `target_lufs` (LUFS), bounded so the
    peak stays at or under PEAK_CEILING (full scale 1.0) and never raising by more than the
    loudness module's limit."""
    gain = gain_to_target(integrated_lufs(pcm.T, RATE_HZ), target_lufs)
    peak = float(np.max(np.abs(pcm))) if pcm.size else 0.0
    if peak > 0.0:
        gain = min(gain, PEAK_CEILING / peak)
    return (pcm * np.float32(gain)).astype(np.float32)


def fade(pcm: FloatArray, fade_s: float) -> FloatArray:
    """`pcm` ([frames, channels]) with linear fades of `fade_s` seconds at both ends
    (shortened to half the clip for clips shorter than two fades)."""
    n = min(round(fade_s * RATE_HZ), pcm.shape[0] // 2)
    out = pcm.copy()
    if n > 0:
        ramp = (np.arange(n, dtype=np.float32) / np.float32(n))[:, None]
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def encode_opus(pcm: FloatArray, bitrate_kbps: int) -> bytes:
    """Ogg/Opus bytes of 48 kHz float32 [frames, channels] at `bitrate_kbps` kbit/s."""
    return _run_ffmpeg(
        ["-f", "f32le", "-ar", str(RATE_HZ), "-ac", str(pcm.shape[1]), "-i", "pipe:0",
         "-c:a", "libopus", "-b:a", f"{bitrate_kbps}k", "-f", "ogg", "pipe:1"],
        np.ascontiguousarray(pcm, dtype="<f4").tobytes(), "encode the clip",
    )  # fmt: skip


def _run_ffmpeg(args: list[str], stdin: bytes | None, what: str) -> bytes:
    """ffmpeg's standard output; ClipError with the tail of its error output on failure."""
    try:
        proc = subprocess.run(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-nostdin", *args],
            input=stdin, capture_output=True, check=False,
        )
    except (OSError, RuntimeError) as e:
        raise ClipError(f"cannot run ffmpeg to {what}: {e}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-STDERR_LINES:]
        detail = "\n".join(tail) or f"exit status {proc.returncode}"
        raise ClipError(f"ffmpeg could not {what}:\n{detail}")
    return proc.stdout


class _KeyedLocks:
    """One lock per key while anyone holds or waits for it; forgotten once nobody does."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Holds the lock of `key` for the block."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


__all__ = ["ClipCache", "ClipError", "ClipSettings"]
