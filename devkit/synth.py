"""Procedural songs with known structure: test material and training data.

`generate_song` renders a short pop-like song from a seed: drums (kick, snare, hats), bass,
chords and a lead melody in a key, arranged in sections (intro, verse, chorus, bridge,
outro) on a beat grid that may swing or speed up and slow down (rubato). Every musical fact
that the audio was made from is returned with it, so analysis can be checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from segue.structure.camelot import PITCH_CLASS_NAMES, KeyMode, camelot, key_name

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_T = TypeVar("_T")

Instrumentation = Literal["electronic", "acoustic", "band", "minimal"]
INSTRUMENTATIONS: tuple[Instrumentation, ...] = ("electronic", "acoustic", "band", "minimal")
SectionFunction = Literal["intro", "verse", "chorus", "bridge", "outro"]

_SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
}
# Chord roots as scale degrees (0 = tonic), one chord per bar, per section function.
_PROGRESSIONS: dict[str, dict[SectionFunction, tuple[tuple[int, ...], ...]]] = {
    "major": {
        "intro": ((0, 0, 3, 4), (0, 3, 0, 4)),
        "verse": ((0, 5, 3, 4), (0, 3, 5, 4), (0, 4, 5, 3)),
        "chorus": ((3, 4, 0, 0), (3, 0, 4, 0), (5, 3, 4, 0)),
        "bridge": ((5, 3, 1, 4), (1, 4, 2, 5)),
        "outro": ((3, 4, 0, 0), (0, 3, 4, 0)),
    },
    "minor": {
        "intro": ((0, 0, 5, 4), (0, 3, 0, 4)),
        "verse": ((0, 5, 2, 6), (0, 3, 5, 4), (0, 6, 5, 4)),
        "chorus": ((5, 6, 0, 0), (3, 4, 0, 0), (0, 3, 4, 0)),
        "bridge": ((2, 6, 5, 4), (5, 2, 6, 4)),
        "outro": ((3, 4, 0, 0), (0, 5, 4, 0)),
    },
}
_MODES: tuple[KeyMode, ...] = ("major", "minor")
_LETTERS: dict[SectionFunction, str] = {
    "intro": "A", "verse": "B", "chorus": "C", "bridge": "D", "outro": "E",
}  # fmt: skip


@dataclass(frozen=True)
class SynthSection:
    start_s: float
    end_s: float
    # Equal letters mean the same chords and arrangement.
    letter: str
    function: SectionFunction
    bars: int


@dataclass(frozen=True)
class SynthSong:
    audio: F32
    sample_rate_hz: int
    seed: int
    # Nominal tempo; with rubato the local tempo varies around it.
    tempo_bpm: float
    beats_per_bar: int
    beat_times_s: F64
    # 1-based position of each beat in its bar.
    beat_positions: npt.NDArray[np.int64]
    key_tonic: int
    key_mode: KeyMode
    sections: tuple[SynthSection, ...]
    instrumentation: Instrumentation
    swing: float
    rubato: bool

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate_hz

    @property
    def downbeat_times_s(self) -> F64:
        out: F64 = self.beat_times_s[self.beat_positions == 1]
        return out

    @property
    def key_name(self) -> str:
        return key_name(self.key_tonic, self.key_mode)

    @property
    def camelot(self) -> str:
        return camelot(self.key_tonic, self.key_mode)

    @property
    def boundaries_s(self) -> F64:
        """Section starts followed by the end of the last section."""
        starts = [s.start_s for s in self.sections]
        return np.asarray([*starts, self.sections[-1].end_s], dtype=np.float64)


def parse_key(key: str | tuple[int, KeyMode]) -> tuple[int, KeyMode]:
    """(tonic pitch class, mode) from "F# minor", "Eb major" or such a tuple."""
    mode: KeyMode
    if isinstance(key, tuple):
        tonic, mode = key[0], key[1]
    else:
        parts = key.strip().split()
        if len(parts) != 2 or parts[1].lower() not in ("major", "minor"):
            raise ValueError(f"key must look like 'F# minor', not {key!r}")
        name = parts[0][:1].upper() + parts[0][1:].lower()
        aliases = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}
        name = aliases.get(name, name)
        if name not in PITCH_CLASS_NAMES:
            raise ValueError(f"unknown tonic {parts[0]!r}")
        tonic = PITCH_CLASS_NAMES.index(name)
        mode = "major" if parts[1].lower() == "major" else "minor"
    if not 0 <= tonic <= 11 or mode not in ("major", "minor"):
        raise ValueError(f"invalid key {key!r}")
    return tonic, mode


def plan_sections(total_bars: int) -> list[tuple[SectionFunction, int]]:
    """Pop form fitted to a number of bars: intro, verse/chorus pairs, a bridge, outro."""
    if total_bars < 12:
        short: list[tuple[SectionFunction, int]] = [("verse", total_bars)]
        return [("intro", 4), ("verse", total_bars - 4)] if total_bars >= 8 else short
    core: list[SectionFunction] = ["verse", "chorus", "verse", "chorus", "bridge", "chorus"]
    plan: list[tuple[SectionFunction, int]] = [("intro", 4)]
    remaining = total_bars - 8
    i = 0
    while remaining >= 8:
        plan.append((core[i % len(core)], 8))
        remaining -= 8
        i += 1
    plan.append(("outro", 4 + remaining))
    return plan


def generate_song(
    seed: int,
    *,
    duration_s: float = 60.0,
    tempo_bpm: float | None = None,
    key: str | tuple[int, KeyMode] | None = None,
    sample_rate_hz: int = 22050,
    swing: float = 0.0,
    rubato: bool = False,
    instrumentation: Instrumentation | None = None,
    beats_per_bar: int = 4,
) -> SynthSong:
    """Renders a song whose beats, key and sections are known.

    The same arguments always give the same audio. `duration_s` is met to within half a bar
    (sections are whole bars). `swing` delays off-beat eighths: 0 straight, 1 triplet feel.
    `rubato` lets the tempo drift by up to about 8% in the bridge and slow down in the outro.
    Unset tempo, key and instrumentation are drawn from the seed.
    """
    if duration_s < 2.0:
        raise ValueError("duration_s must be at least 2 s")
    if not 0.0 <= swing <= 1.0:
        raise ValueError("swing must be between 0 and 1")
    if beats_per_bar not in (3, 4):
        raise ValueError("beats_per_bar must be 3 or 4")
    rng = np.random.default_rng(seed)
    bpm = (
        float(tempo_bpm)
        if tempo_bpm is not None
        else float(np.exp(rng.uniform(np.log(72), np.log(170))))
    )
    if not 30.0 <= bpm <= 300.0:
        raise ValueError("tempo_bpm must be between 30 and 300")
    tonic, mode = (
        parse_key(key) if key is not None else (int(rng.integers(12)), _choice(rng, _MODES))
    )
    instr: Instrumentation = (
        instrumentation if instrumentation is not None else _choice(rng, INSTRUMENTATIONS)
    )
    if instr not in INSTRUMENTATIONS:
        raise ValueError(f"instrumentation must be one of {INSTRUMENTATIONS}")

    bar_s = 60.0 / bpm * beats_per_bar
    plan = plan_sections(max(2, round(duration_s / bar_s)))
    functions = [f for f, bars in plan for _ in range(bars)]
    beat_periods = _beat_periods(functions, beats_per_bar, 60.0 / bpm, rubato, rng)
    beat_times = np.concatenate([[0.0], np.cumsum(beat_periods)])
    # A short lead-in so the first beat is not the first sample.
    lead_in = 0.25
    beat_times = beat_times + lead_in
    n_beats = len(functions) * beats_per_bar
    song_end = beat_times[n_beats] + 0.5

    renderer = _Renderer(sample_rate_hz, song_end, rng)
    progressions = {
        f: _PROGRESSIONS[mode][f][int(rng.integers(len(_PROGRESSIONS[mode][f])))]
        for f in _PROGRESSIONS[mode]
    }
    melody_seed = int(rng.integers(1 << 31))
    sections: list[SynthSection] = []
    bar = 0
    for function, bars in plan:
        start = float(beat_times[bar * beats_per_bar])
        end = float(beat_times[(bar + bars) * beats_per_bar])
        sections.append(SynthSection(start, end, _LETTERS[function], function, bars))
        _arrange_section(
            renderer, function, bar, bars, beat_times, beats_per_bar, tonic, mode,
            progressions[function], instr, swing,
            np.random.default_rng([melody_seed, list(_LETTERS).index(function)]),
        )  # fmt: skip
        bar += bars

    audio = renderer.mix()
    positions = (np.arange(n_beats) % beats_per_bar) + 1
    return SynthSong(
        audio=audio,
        sample_rate_hz=sample_rate_hz,
        seed=seed,
        tempo_bpm=bpm,
        beats_per_bar=beats_per_bar,
        beat_times_s=beat_times[:n_beats].astype(np.float64),
        beat_positions=positions.astype(np.int64),
        key_tonic=tonic,
        key_mode=mode,
        sections=tuple(sections),
        instrumentation=instr,
        swing=swing,
        rubato=rubato,
    )


def evaluation_song(seed: int) -> SynthSong:
    """The generated song the structure evaluation (bench/eval_structure.py) and the beat
    activation's training draw for `seed`: its length (45, 60 or 90 s), swing (0, 0.3 or 0.6)
    and rubato (one seed in four) cycle with the seed, the rest comes from the seed."""
    k = seed - 1000
    return generate_song(
        seed,
        duration_s=float([45, 60, 90][k % 3]),
        swing=[0.0, 0.3, 0.6][(k // 3) % 3],
        rubato=k % 4 == 3,
    )


def _choice(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    return options[int(rng.integers(len(options)))]


def _beat_periods(
    functions: list[SectionFunction],
    beats_per_bar: int,
    period: float,
    rubato: bool,
    rng: np.random.Generator,
) -> F64:
    per_beat = np.repeat(np.asarray(functions), beats_per_bar)
    # A few beats past the end give later notes something to ring against.
    extra = 4
    periods = np.full(len(per_beat) + extra, period)
    if rubato:
        phase = rng.uniform(0, 2 * np.pi)
        beat = np.arange(len(periods))
        drift = 1.0 + 0.08 * np.sin(2 * np.pi * beat / (4 * beats_per_bar) + phase)
        in_bridge = np.append(per_beat == "bridge", [False] * extra)
        periods = np.where(in_bridge, periods * drift, periods)
        outro = np.flatnonzero(np.append(per_beat == "outro", [True] * extra))
        if len(outro) > 1:
            # Ritardando: the outro ends about 15% slower.
            periods[outro] *= np.linspace(1.0, 1.15, len(outro))
    out: F64 = periods
    return out


def _midi_hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def _chord(tonic: int, mode: KeyMode, degree: int) -> list[int]:
    """Pitch classes of the triad on a scale degree (minor keys use a major V chord)."""
    scale = list(_SCALES[mode])
    if mode == "minor" and degree == 4:
        scale[6] = 11  # harmonic minor: the leading tone makes V major
    return [(tonic + scale[(degree + k) % 7]) % 12 for k in (0, 2, 4)]


def _near(pc: int, target_midi: int) -> int:
    """MIDI note of pitch class `pc` nearest to `target_midi`."""
    base = target_midi - ((target_midi - pc) % 12)
    return base if target_midi - base <= 6 else base + 12


class _Renderer:
    def __init__(self, sample_rate_hz: int, duration_s: float, rng: np.random.Generator) -> None:
        self.sr = sample_rate_hz
        self.rng = rng
        n = int(np.ceil(duration_s * sample_rate_hz))
        self.buses = {name: np.zeros(n, np.float32) for name in ("drums", "bass", "chords", "lead")}
        self._noise = rng.standard_normal(sample_rate_hz).astype(np.float32)

    def add(self, bus: str, time_s: float, sound: F32, gain: float) -> None:
        target = self.buses[bus]
        start = round(time_s * self.sr)
        if start >= len(target) or start + len(sound) <= 0:
            return
        lo = max(0, -start)
        hi = min(len(sound), len(target) - start)
        target[start + lo : start + hi] += gain * sound[lo:hi]

    def t(self, duration_s: float) -> F32:
        out: F32 = (np.arange(max(1, round(duration_s * self.sr))) / self.sr).astype(np.float32)
        return out

    def noise(self, n: int) -> F32:
        offset = int(self.rng.integers(len(self._noise) - n)) if n < len(self._noise) else 0
        return self._noise[offset : offset + n]

    def kick(self, soft: bool) -> F32:
        t = self.t(0.3)
        freq = 48.0 + 110.0 * np.exp(-t * 35.0)
        phase = 2 * np.pi * np.cumsum(freq) / self.sr
        click = np.exp(-t * 400.0) * (0.3 if soft else 0.6)
        out: F32 = (np.sin(phase) * np.exp(-t * (14.0 if soft else 9.0)) + click).astype(np.float32)
        return out

    def snare(self, soft: bool) -> F32:
        t = self.t(0.22)
        noise = np.diff(self.noise(len(t) + 1))
        body = np.sin(2 * np.pi * 185.0 * t) * np.exp(-t * 30.0)
        out: F32 = (noise * np.exp(-t * (30.0 if soft else 18.0)) * 0.6 + 0.5 * body).astype(
            np.float32
        )
        return out

    def hat(self, open_: bool) -> F32:
        t = self.t(0.25 if open_ else 0.05)
        noise = np.diff(np.diff(self.noise(len(t) + 2)))
        out: F32 = (noise * np.exp(-t * (12.0 if open_ else 90.0)) * 0.35).astype(np.float32)
        return out

    def tone(self, midi: float, duration_s: float, harmonics: Sequence[float], attack_s: float,
             decay_per_s: float) -> F32:  # fmt: skip
        t = self.t(duration_s)
        freq = _midi_hz(midi)
        wave = np.zeros_like(t)
        for k, amp in enumerate(harmonics, start=1):
            if amp and freq * k < self.sr / 2:
                wave += amp * np.sin(2 * np.pi * freq * k * t)
        envelope = np.minimum(1.0, t / max(attack_s, 1e-3)) * np.exp(-t * decay_per_s)
        release = min(len(t), round(0.03 * self.sr))
        envelope[-release:] *= np.linspace(1.0, 0.0, release)
        out: F32 = (wave * envelope).astype(np.float32)
        return out

    def mix(self) -> F32:
        levels = {"drums": 1.0, "bass": 0.8, "chords": 0.45, "lead": 0.4}
        out = sum(levels[name] * bus for name, bus in self.buses.items())
        assert isinstance(out, np.ndarray)
        peak = float(np.max(np.abs(out))) or 1.0
        mixed: F32 = (out * (0.9 / peak)).astype(np.float32)
        return mixed


def _arrange_section(
    r: _Renderer,
    function: SectionFunction,
    first_bar: int,
    bars: int,
    beat_times: F64,
    beats_per_bar: int,
    tonic: int,
    mode: KeyMode,
    progression: tuple[int, ...],
    instr: Instrumentation,
    swing: float,
    melody_rng: np.random.Generator,
) -> None:
    def at(beat: float) -> float:
        i = int(np.floor(beat))
        return float(beat_times[i] + (beat - i) * (beat_times[i + 1] - beat_times[i]))

    def eighth(beat: int, half: int) -> float:
        # Swing pushes the off-beat eighth from 1/2 towards 2/3 of the beat.
        return at(beat + (0.5 + swing / 6.0) * half)

    acoustic = instr == "acoustic"
    loud = {"intro": 0.55, "verse": 0.75, "chorus": 1.0, "bridge": 0.65, "outro": 0.5}[function]
    jitter = 0.004 if acoustic else 0.0
    scale = _SCALES[mode]
    melody_degree = 7 * 4  # tonic, an octave up in scale steps
    for b in range(bars):
        bar = first_bar + b
        chord = _chord(tonic, mode, progression[b % len(progression)])
        first_beat = bar * beats_per_bar
        bar_len = at(first_beat + beats_per_bar) - at(first_beat)
        fading = function == "outro" and b >= bars - 2
        gain = loud * (0.6 if fading and b == bars - 1 else 1.0)

        # Drums: the bridge drops the kick, the intro has only hats (and kick when electronic).
        for beat in range(beats_per_bar):
            i = first_beat + beat
            t = at(i) + (r.rng.uniform(-jitter, jitter) if jitter else 0.0)
            kick_here = (
                instr in ("electronic", "minimal")
                or beat == 0
                or (beat == 2 and beats_per_bar == 4)
                or (instr == "band" and beat == 2 and beats_per_bar == 3)
            )
            if (
                kick_here
                and function != "bridge"
                and (function != "intro" or instr == "electronic")
            ):
                r.add("drums", t, r.kick(acoustic), gain * (1.0 if beat == 0 else 0.85))
            backbeat = beat % 2 == 1 if beats_per_bar == 4 else beat > 0
            if backbeat and instr != "minimal" and function not in ("intro", "bridge"):
                r.add("drums", t, r.snare(acoustic), gain * (0.5 if acoustic else 0.7))
            if instr != "minimal" and function != "bridge":
                for half in (0, 1):
                    open_hat = function == "chorus" and half == 1 and instr != "acoustic"
                    r.add(
                        "drums", eighth(i, half), r.hat(open_hat), gain * (0.5 + 0.3 * (half == 0))
                    )
        if b == 0 and function in ("chorus", "bridge") and instr != "minimal":
            r.add("drums", at(first_beat), r.hat(True), 1.2 * gain)  # crash on the section start

        # Bass: root on the strong beats; electronic and band drive eighths in the chorus.
        if function != "intro":
            root = _near(chord[0], 40)
            hits = (
                [(beat, h) for beat in range(beats_per_bar) for h in (0, 1)]
                if function == "chorus" and instr in ("electronic", "band")
                else [(beat, 0) for beat in range(0, beats_per_bar, 2)]
            )
            for beat, half in hits:
                start = eighth(first_beat + beat, half)
                length = 0.9 * (
                    at(first_beat + beat + (0.5 if len(hits) > 4 else 2.0)) - at(first_beat + beat)
                )
                harmonics: tuple[float, ...] = (
                    (1.0, 0.5, 0.3, 0.15) if instr != "acoustic" else (1.0, 0.6, 0.2)
                )
                r.add("bass", start, r.tone(root, length, harmonics, 0.005, 3.0), gain)

        # Chords: held pads, or strummed plucks on acoustic instruments.
        voicing = [_near(pc, 62) for pc in chord] + [_near(chord[0], 50)]
        pluck = acoustic or (instr == "band" and function != "intro")
        for k, note in enumerate(voicing):
            if pluck:
                for beat in range(0, beats_per_bar, 2 if beats_per_bar == 4 else 3):
                    start = at(first_beat + beat) + 0.012 * k
                    r.add(
                        "chords",
                        start,
                        r.tone(note, 1.2, (1.0, 0.5, 0.33, 0.2, 0.1), 0.003, 3.5),
                        gain,
                    )
            else:
                r.add(
                    "chords",
                    at(first_beat),
                    r.tone(note, bar_len, (1.0, 0.35, 0.15), 0.06, 0.4),
                    gain,
                )

        # Lead: a random walk on the scale that lands on chord tones on strong beats.
        if function in ("verse", "chorus", "bridge"):
            dense = function == "chorus"
            for beat in range(beats_per_bar):
                for half in (0, 1) if dense else (0,):
                    if not dense and melody_rng.random() < 0.25:
                        continue
                    melody_degree += int(melody_rng.integers(-2, 3))
                    melody_degree = int(np.clip(melody_degree, 24, 36))
                    pc = (tonic + scale[melody_degree % 7]) % 12
                    if half == 0 and beat % 2 == 0:
                        pc = chord[int(melody_rng.integers(3))]
                    octave_target = 72 + (5 if dense else 0)
                    note = _near(pc, octave_target)
                    length = (
                        0.45
                        * (at(first_beat + beat + 1) - at(first_beat + beat))
                        * (1 if dense else 2)
                    )
                    harmonics = (
                        (1.0, 0.0, 0.3, 0.0, 0.15)
                        if instr == "electronic"
                        else (1.0, 0.4, 0.2, 0.1)
                    )
                    r.add(
                        "lead",
                        eighth(first_beat + beat, half),
                        r.tone(note, length, harmonics, 0.01, 2.0),
                        gain,
                    )
