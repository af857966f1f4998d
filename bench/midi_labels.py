"""Exact structure labels read from a MIDI file with mido: beats, downbeats, tempo changes,
meters, key signatures and markers, all in seconds of the rendered audio."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

# mido's key names (major "C", "F#", minor "Am") in mir_eval's spelling.
_SHARPS = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb", "Cb": "B", "Fb": "E"}
_PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Compound meters (6/8, 9/8, 12/8) are counted in dotted beats, as annotators tap them.
_COMPOUND = {6, 9, 12}


@dataclass(frozen=True)
class MidiLabels:
    """Ground truth of one MIDI file; every time in seconds from the file's start."""

    duration_s: float
    beats_s: np.ndarray
    downbeats_s: np.ndarray
    # (time s, BPM in the labelled beat unit) at every tempo or meter change.
    tempi: list[tuple[float, float]] = field(default_factory=list)
    # (time s, numerator, denominator).
    meters: list[tuple[float, int, int]] = field(default_factory=list)
    # (time s, "A minor") in mir_eval's key format.
    keys: list[tuple[float, str]] = field(default_factory=list)
    # (time s, text) of marker meta events.
    markers: list[tuple[float, str]] = field(default_factory=list)

    def excerpt(self, end_s: float) -> MidiLabels:
        """The labels of the first `end_s` seconds."""

        def before(items: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
            return [x for x in items if x[0] < end_s]

        return MidiLabels(
            duration_s=min(self.duration_s, end_s),
            beats_s=self.beats_s[self.beats_s < end_s],
            downbeats_s=self.downbeats_s[self.downbeats_s < end_s],
            tempi=before(self.tempi),  # type: ignore[arg-type]
            meters=before(self.meters),  # type: ignore[arg-type]
            keys=before(self.keys),  # type: ignore[arg-type]
            markers=before(self.markers),  # type: ignore[arg-type]
        )

    def main_bpm(self) -> float:
        """The tempo (BPM) that holds longest; 0 when there are no beats."""
        if len(self.beats_s) < 2:
            return 0.0
        intervals = np.diff(self.beats_s)
        bpm = np.round(60.0 / intervals, 1)
        values, index = np.unique(bpm, return_inverse=True)
        weight = np.bincount(index, weights=intervals)
        return float(values[int(np.argmax(weight))])


def mir_key(name: str) -> str:
    """mido's key signature name ("Bb", "F#m") as mir_eval spells it ("Bb major", "F# minor")."""
    minor = name.endswith("m")
    tonic = name[:-1] if minor else name
    tonic = _SHARPS.get(tonic, tonic)
    return f"{tonic} {'minor' if minor else 'major'}"


@dataclass
class Timeline:
    """Tempo and meter events in ticks, merged over all tracks."""

    ticks_per_beat: int
    tempo: list[tuple[int, int]]  # (tick, µs per quarter note)
    meter: list[tuple[int, int, int]]  # (tick, numerator, denominator)
    keys: list[tuple[int, str]]
    markers: list[tuple[int, str]]
    end_tick: int

    def seconds(self, tick: int | np.ndarray) -> np.ndarray:
        """Seconds at each tick, through the tempo map."""
        ticks = np.atleast_1d(np.asarray(tick, dtype=np.float64))
        starts = np.array([t for t, _ in self.tempo], dtype=np.float64)
        per_tick = np.array([us for _, us in self.tempo], np.float64) / 1e6 / self.ticks_per_beat
        offsets = np.concatenate([[0.0], np.cumsum(np.diff(starts) * per_tick[:-1])])
        seg = np.searchsorted(starts, ticks, side="right") - 1
        return offsets[seg] + (ticks - starts[seg]) * per_tick[seg]


def read_timeline(midi: mido.MidiFile) -> Timeline:
    tempo: dict[int, int] = {0: 500_000}
    meter: dict[int, tuple[int, int]] = {0: (4, 4)}
    keys: dict[int, str] = {}
    markers: list[tuple[int, str]] = []
    end_tick = 0
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo[tick] = msg.tempo
            elif msg.type == "time_signature":
                meter[tick] = (msg.numerator, msg.denominator)
            elif msg.type == "key_signature":
                keys[tick] = msg.key
            elif msg.type == "marker" and msg.text.strip():
                markers.append((tick, msg.text.strip()))
            elif msg.type in ("note_on", "note_off"):
                end_tick = max(end_tick, tick)
    return Timeline(
        ticks_per_beat=midi.ticks_per_beat,
        tempo=sorted(tempo.items()),
        meter=[(t, n, d) for t, (n, d) in sorted(meter.items())],
        keys=sorted(keys.items()),
        markers=sorted(markers),
        end_tick=end_tick,
    )


def _beat_ticks(line: Timeline) -> tuple[list[int], list[int]]:
    """Beat and downbeat ticks: bars restart at every meter change; the last note's tick ends
    the grid."""
    beats: list[int] = []
    downbeats: list[int] = []
    for i, (start, num, den) in enumerate(line.meter):
        stop = line.meter[i + 1][0] if i + 1 < len(line.meter) else line.end_tick + 1
        unit = line.ticks_per_beat * 4 / den
        per_bar = num
        if num in _COMPOUND and den == 8:
            unit, per_bar = unit * 3, num // 3
        k = 0
        while (tick := start + round(k * unit)) < stop:
            beats.append(tick)
            if k % per_bar == 0:
                downbeats.append(tick)
            k += 1
    return beats, downbeats


def read_labels(path: Path) -> MidiLabels:
    """Beats, downbeats, tempo, meter, keys and markers of a MIDI file, in seconds."""
    line = read_timeline(mido.MidiFile(str(path)))
    beat_ticks, down_ticks = _beat_ticks(line)
    beats = line.seconds(np.asarray(beat_ticks))
    changes = sorted({t for t, _ in line.tempo} | {t for t, _, _ in line.meter})
    tempi = []
    for tick in changes:
        i = int(np.searchsorted(beat_ticks, tick))
        if i + 1 < len(beats):
            tempi.append((float(line.seconds(tick)[0]), 60.0 / float(beats[i + 1] - beats[i])))
    return MidiLabels(
        duration_s=float(line.seconds(line.end_tick)[0]),
        beats_s=beats,
        downbeats_s=line.seconds(np.asarray(down_ticks)),
        tempi=tempi,
        meters=[(float(line.seconds(t)[0]), n, d) for t, n, d in line.meter],
        keys=[(float(line.seconds(t)[0]), mir_key(k)) for t, k in line.keys],
        markers=[(float(line.seconds(t)[0]), text) for t, text in line.markers],
    )


def note_pitch_histogram(path: Path, end_s: float = np.inf) -> np.ndarray:
    """Twelve pitch-class weights (note seconds) of the non-drum notes before `end_s`."""
    hist = np.zeros(12)
    now = 0.0
    held: dict[tuple[int, int], float] = {}
    for msg in mido.MidiFile(str(path)):  # iterating a MidiFile yields seconds
        now += msg.time
        if now >= end_s:
            break
        if msg.type not in ("note_on", "note_off") or msg.channel == 9:
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            held[key] = now
        elif key in held:
            hist[msg.note % 12] += now - held.pop(key)
    return hist


# Krumhansl-Kessler profiles (major, minor), tonic first.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def score_key(hist: np.ndarray, key: str) -> float:
    """Correlation of a pitch-class histogram with the Krumhansl-Kessler profile of `key`."""
    tonic, mode = key.split()
    profile = np.roll(_MAJOR if mode == "major" else _MINOR, _PITCH_CLASSES.index(tonic))
    return float(np.corrcoef(hist, profile)[0, 1])


def relative(key: str) -> str:
    """The relative minor of a major key, and the relative major of a minor one."""
    tonic, mode = key.split()
    pc = _PITCH_CLASSES.index(tonic)
    if mode == "major":
        return f"{_PITCH_CLASSES[(pc + 9) % 12]} minor"
    return f"{_PITCH_CLASSES[(pc + 3) % 12]} major"


def checked_key(path: Path, labels: MidiLabels, end_s: float) -> str | None:
    """The key signature in force at the start, with its mode taken from the notes (a signature
    names a pair of relative keys; sequencers write minor pieces with the major's signature).
    None when there is no signature, the signature changes within the excerpt, or neither key
    of the pair fits the notes (a default "C" left in a file in another key)."""
    keys = [k for t, k in labels.keys if t < end_s]
    if len(set(keys)) != 1:
        return None
    hist = note_pitch_histogram(path, end_s)
    if hist.sum() <= 0:
        return None
    pair = [keys[0], relative(keys[0])]
    best = max(pair, key=lambda k: score_key(hist, k))
    all_keys = [f"{p} {m}" for p in _PITCH_CLASSES for m in ("major", "minor")]
    top = sorted(all_keys, key=lambda k: score_key(hist, k), reverse=True)[:3]
    return best if best in top else None
