"""The labelled real-composition set: human-composed MIDI from Debian packages, rendered with
fluidsynth through two General MIDI soundfonts, with exact labels read from the files.

Built by `make data` (scripts/build_midi_set.py) into data/midi_set/ (gitignored):
data/midi_set/midi/<source>/*.mid and copyright, audio/<piece>__<font>.npy (mono float16,
22050 Hz, the first EXCERPT_S seconds), catalog.json (source, licence, split and SHA-256 of every
file). Idempotent: files already rendered are kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido
import numpy as np

from bench.midi_labels import MidiLabels, checked_key, read_labels, read_timeline

SR = 22050
# Audio kept after a piece's last event (release tails); anything longer is cut.
RENDER_TAIL_S = 5.0
ROOT = Path(__file__).resolve().parents[1]
SET_DIR = ROOT / "data" / "midi_set"
# Excerpts keep rendering and the peers' run in minutes on two cores.
EXCERPT_S = 60.0
# (package, folder of its MIDI files or of WADs holding them as lumps, licence of the music from
# the package's copyright file)
SOURCES = {
    "openmsx": (
        "openttd-openmsx",
        "usr/share/games/openttd/baseset/openmsx",
        "GPL-2.0 (Debian openttd-openmsx, see copyright)",
    ),
    "simutrans": (
        "simutrans-data",
        "usr/share/games/simutrans/music",
        "Artistic-1.0 (Debian simutrans-data, Files: *, see copyright)",
    ),
    # Rock, metal and ambient game music, nothing like the two sources above in style.
    "freedoom": (
        "freedoom",
        "usr/share/games/doom",
        "BSD-3-Clause (Debian freedoom, freedoom-license, see copyright)",
    ),
    # The same project's deathmatch soundtrack: the same style in other pieces, for tuning.
    "freedm": (
        "freedm",
        "usr/share/games/doom",
        "BSD-3-Clause (Debian freedm, freedoom-license, see copyright)",
    ),
}
# Sources held out whole: no piece of theirs is in the tuning split, so they measure
# generalisation to music unlike anything tuned on.
HELDOUT_SOURCES = frozenset({"freedoom"})
# Sources used for tuning only, whole. A file whose bytes an earlier source (in SOURCES order)
# already holds is left out, so no piece is in both splits: freedm shares six with freedoom.
TUNING_SOURCES = frozenset({"freedm"})
# Share of note onsets that must sit on the labelled grid (within GRID_TOLERANCE beats of a
# sixteenth or a triplet eighth); chance is a quarter. Files converted from Doom's MUS format
# keep their notes at 140 Hz ticks under an arbitrary tempo, so their "beats" are no beats,
# and they score 0.24-0.27; played-in (humanised) files with a true tempo map score 0.49 and up.
MIN_ON_GRID = 0.45
GRID_TOLERANCE = 1.0 / 48.0
FONTS = {
    "fluidr3": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "timgm6mb": Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
}
# Labelled beats must sit at a tappable rate: files in 7/16 or with 1/16 bars count sixteenths.
BPM_RANGE = (50.0, 240.0)


@dataclass(frozen=True)
class Piece:
    """One rendering of one excerpt, with its labels."""

    name: str  # "<source>/<file stem>"
    font: str
    split: str  # "tuning" or "heldout"
    audio_path: Path
    midi_path: Path
    labels: MidiLabels
    key: str | None  # checked key signature, mir_eval spelling

    def audio(self) -> np.ndarray:
        """Mono float32 PCM at SR Hz."""
        pcm: np.ndarray = np.load(self.audio_path).astype(np.float32)
        return pcm


def split_of(name: str) -> str:
    """A fixed split of whole pieces (both renderings together): about a third for tuning,
    except in HELDOUT_SOURCES and TUNING_SOURCES, which go to one split whole."""
    source = name.split("/", 1)[0]
    if source in HELDOUT_SOURCES:
        return "heldout"
    if source in TUNING_SOURCES:
        return "tuning"
    digest = hashlib.sha256(name.encode()).digest()
    return "tuning" if digest[0] % 3 == 0 else "heldout"


def trim_midi(midi: Path, end_s: float, out: Path) -> None:
    """Writes a copy of `midi` without the events after `end_s` seconds, every channel's notes
    and sustain pedal released at the cut, so that fluidsynth renders only the excerpt."""
    source = mido.MidiFile(str(midi))
    timeline = _tempo_seconds(source)
    trimmed = mido.MidiFile(type=source.type, ticks_per_beat=source.ticks_per_beat)
    for track in source.tracks:
        kept = mido.MidiTrack()
        tick = last = 0
        channels: set[int] = set()
        for msg in track:
            tick += msg.time
            # mido writes the end-of-track event itself, after the last kept one.
            if msg.type == "end_of_track" or timeline(tick) > end_s:
                continue
            if hasattr(msg, "channel"):
                channels.add(msg.channel)
            kept.append(msg.copy(time=tick - last))
            last = tick
        # Held notes and pedals would keep fluidsynth rendering past the cut.
        for channel in sorted(channels):
            kept.append(mido.Message("control_change", channel=channel, control=64, value=0))
            kept.append(mido.Message("control_change", channel=channel, control=123, value=0))
        trimmed.tracks.append(kept)
    trimmed.save(str(out))


def _tempo_seconds(source: mido.MidiFile) -> Any:
    """A function from tick to seconds through the file's tempo map."""
    line = read_timeline(source)
    return lambda tick: float(line.seconds(tick)[0])


def render(midi: Path, font: Path, end_s: float | None = None, gain: float = 0.5) -> np.ndarray:
    """Renders a MIDI file (the first `end_s` seconds, or all) with fluidsynth to mono float32
    PCM at SR Hz.

    fluidsynth has no random state; one synthesis thread keeps the sum order fixed, so one
    file and soundfont always give the same samples. Some files keep fluidsynth rendering
    silence forever (one filled 35 GB of disk through a WAV file), so the audio is read from
    its standard output and fluidsynth is stopped at the piece's length plus RENDER_TAIL_S."""
    limit_s = (end_s if end_s is not None else mido.MidiFile(str(midi)).length) + RENDER_TAIL_S
    with tempfile.TemporaryDirectory() as tmp:
        if end_s is not None:
            trim_midi(midi, end_s, Path(tmp) / "in.mid")
            midi = Path(tmp) / "in.mid"
        raw = _fluidsynth_raw(midi, font, gain, max_bytes=int(limit_s * SR) * 2 * 4)
    pcm = np.frombuffer(raw, dtype=np.float32)
    stereo = pcm[: pcm.size - pcm.size % 2].reshape(-1, 2)
    return np.ascontiguousarray(stereo.mean(axis=1), dtype=np.float32)


def _fluidsynth_raw(midi: Path, font: Path, gain: float, max_bytes: int) -> bytes:
    """fluidsynth's interleaved stereo float32 output, at most `max_bytes` of it."""
    options = f"-ni -q -g {gain} -r {SR} -o synth.cpu-cores=1 -o audio.file.format=float"
    args = ["fluidsynth", *options.split(), "-F", "-", "-T", "raw", str(font), str(midi)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        data = proc.stdout.read(max_bytes)
        if proc.stdout.read(1):
            proc.kill()  # still rendering past the piece: the rest is not wanted
        code = proc.wait(timeout=600)
    if code not in (0, -signal.SIGKILL):
        raise subprocess.CalledProcessError(code, args)
    return data


def _fetch_package(source: str, dest: Path) -> None:
    """Unpacks a source's MIDI files (loose, or lumps of its WADs) and copyright file into
    dest (apt-get download)."""
    package, folder, _ = SOURCES[source]
    if dest.exists() and any(dest.glob("*.mid")):
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        dest.mkdir(parents=True, exist_ok=True)
        for mid in sorted((unpacked / folder).glob("*.mid")):
            shutil.copy2(mid, dest / mid.name)
        extract_wad_midi(sorted((unpacked / folder).glob("*.wad")), dest)
        shutil.copy2(unpacked / "usr/share/doc" / package / "copyright", dest / "copyright")


def wad_midi_lumps(wad: Path) -> list[tuple[str, bytes]]:
    """(lump name, data) of every Standard MIDI File lump in a Doom WAD (music lumps in the
    MUS format are left out).

    A WAD is a 12-byte header (magic, lump count, directory offset) and a directory of
    16-byte entries (offset, size, 8-byte NUL-padded name), all little-endian.
    """
    data = wad.read_bytes()
    magic, count, directory = struct.unpack_from("<4sii", data, 0)
    if magic not in (b"IWAD", b"PWAD"):
        raise ValueError(f"{wad}: not a WAD file")
    lumps = []
    for i in range(count):
        offset, size, raw_name = struct.unpack_from("<ii8s", data, directory + 16 * i)
        body = data[offset : offset + size]
        if body[:4] == b"MThd":
            lumps.append((raw_name.rstrip(b"\0").decode("ascii", "replace"), body))
    return lumps


def extract_wad_midi(wads: list[Path], dest: Path) -> None:
    """Writes each WAD's MIDI lumps to dest as <wad stem>_<lump name>.mid. A lump another one
    repeats (a level reusing another's music) is written twice; `distinct_files` keeps one."""
    for wad in wads:
        for name, body in wad_midi_lumps(wad):
            stem = name.lower().removeprefix("d_")
            (dest / f"{wad.stem}_{stem}.mid").write_bytes(body)


def on_grid_share(midi: mido.MidiFile) -> float:
    """Share of note onsets within GRID_TOLERANCE beats of a sixteenth or a triplet eighth
    (beats counted in the file's ticks per beat); 0 for a file without notes."""
    ticks = []
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                ticks.append(tick)
    if not ticks:
        return 0.0
    beats = np.asarray(ticks, np.float64) / midi.ticks_per_beat
    near = np.zeros(len(beats), dtype=bool)
    for step in (1.0 / 4.0, 1.0 / 3.0):
        offset = beats / step
        near |= np.abs(offset - np.round(offset)) * step <= GRID_TOLERANCE
    return float(near.mean())


def _usable(midi: Path) -> MidiLabels | None:
    """The excerpt's labels, or None for a file mido cannot read, with no tappable beat or
    whose notes do not follow its labelled beat."""
    try:
        labels = read_labels(midi).excerpt(EXCERPT_S)
        on_grid = on_grid_share(mido.MidiFile(str(midi)))
    except (mido.KeySignatureError, ValueError, KeyError, EOFError, OSError):  # malformed files
        return None
    if on_grid < MIN_ON_GRID:
        return None
    bpm = labels.main_bpm()
    if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1] or labels.duration_s < 30.0:
        return None
    return labels


def _render_one(midi: Path, font: str, out: Path) -> None:
    if out.exists():
        return
    # One second more than the excerpt lets the last notes' releases sound.
    pcm = render(midi, FONTS[font], EXCERPT_S + 1.0)[: int(EXCERPT_S * SR)]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, pcm.astype(np.float16))


def distinct_files(folders: dict[str, Path]) -> list[tuple[str, Path]]:
    """(source, MIDI file) for every file in the sources' folders, in that order, without a
    file whose bytes an earlier one had: one piece never lands in two sources or splits."""
    seen: set[str] = set()
    out = []
    for source, folder in folders.items():
        for midi in sorted(folder.glob("*.mid")):
            digest = _sha256(midi)
            if digest not in seen:
                seen.add(digest)
                out.append((source, midi))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(set_dir: Path = SET_DIR, workers: int = 2) -> list[dict[str, Any]]:
    """Fetches, filters and renders the set; writes and returns its catalogue."""
    folders = {source: set_dir / "midi" / source for source in SOURCES}
    for source, folder in folders.items():
        _fetch_package(source, folder)
    jobs: list[tuple[Path, str, Path]] = []
    entries: list[dict[str, Any]] = []
    for source, midi in distinct_files(folders):
        if _usable(midi) is None:
            continue
        for font in FONTS:
            out = set_dir / "audio" / f"{source}__{midi.stem}__{font}.npy"
            jobs.append((midi, font, out))
            entries.append(_entry(source, midi, font, out, set_dir))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: _render_one(*job), jobs))
    for entry in entries:
        entry["audio_sha256"] = _sha256(set_dir / entry["audio"])
    (set_dir / "catalog.json").write_text(json.dumps(entries, indent=1))
    return entries


def _entry(source: str, midi: Path, font: str, audio: Path, set_dir: Path) -> dict[str, Any]:
    """A rendering's catalogue entry (its audio's hash is added once rendered)."""
    package, _, licence = SOURCES[source]
    name = f"{source}/{midi.stem}"
    return {
        "name": name,
        "font": font,
        "split": split_of(name),
        "source": package,
        "licence": licence,
        "midi": str(midi.relative_to(set_dir)),
        "midi_sha256": _sha256(midi),
        "audio": str(audio.relative_to(set_dir)),
    }


def load(split: str | None = None, set_dir: Path = SET_DIR) -> list[Piece]:
    """The built set's pieces (one per rendering), optionally one split only; [] if unbuilt."""
    catalog = set_dir / "catalog.json"
    if not catalog.exists():
        return []
    pieces = []
    for entry in json.loads(catalog.read_text()):
        if split is not None and entry["split"] != split:
            continue
        midi = set_dir / entry["midi"]
        labels = read_labels(midi).excerpt(EXCERPT_S)
        pieces.append(
            Piece(
                name=entry["name"],
                font=entry["font"],
                split=entry["split"],
                audio_path=set_dir / entry["audio"],
                midi_path=midi,
                labels=labels,
                key=checked_key(midi, labels, EXCERPT_S),
            )
        )
    return pieces
