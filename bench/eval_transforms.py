"""Tempo-changed and pitch-shifted copies of real recordings: the tempo estimate must move by
the known ratio (within 2%) and the key by the known number of semitones.

Tempo copies are stretched with audiotsm's WSOLA (the project's reference time-stretch, which
keeps pitch); pitch copies are shifted with librosa.effects.pitch_shift (phase vocoder, keeps
tempo). The first EXCERPT_S seconds of each recording are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SR = 22050
EXCERPT_S = 60.0
TEMPO_RATIOS = (0.92, 1.08)
SEMITONES = (-2, 3)
TOLERANCE = 0.02


def stretch_tempo(audio: np.ndarray, ratio: float) -> np.ndarray:
    """`audio` played `ratio` times as fast (ratio 1.08: 8% faster), pitch kept (WSOLA)."""
    from audiotsm import wsola
    from audiotsm.io.array import ArrayReader, ArrayWriter

    reader, writer = ArrayReader(audio[None, :].astype(np.float32)), ArrayWriter(1)
    wsola(1, speed=ratio).run(reader, writer)
    return np.asarray(writer.data[0], np.float32)


def shift_pitch(audio: np.ndarray, semitones: int) -> np.ndarray:
    """`audio` transposed by `semitones`, tempo kept."""
    import librosa

    return np.asarray(librosa.effects.pitch_shift(audio, sr=SR, n_steps=semitones), np.float32)


def transform_row(
    name: str, audio: np.ndarray, analyse: Callable[[np.ndarray], Any]
) -> dict[str, Any]:
    """The original's tempo and key, and each copy's tempo ratio and key shift against it."""
    audio = audio[: int(EXCERPT_S * SR)].astype(np.float32)
    base = analyse(audio)
    row: dict[str, Any] = {
        "name": name,
        "bpm": base.tempo_bpm,
        "key": base.key.name,
        "tempo": [],
        "pitch": [],
    }
    for ratio in TEMPO_RATIOS:
        got = analyse(stretch_tempo(audio, ratio)).tempo_bpm
        measured = got / base.tempo_bpm if base.tempo_bpm > 0 else 0.0
        row["tempo"].append(
            {"ratio": ratio, "measured": measured, "ok": abs(measured / ratio - 1) <= TOLERANCE}
        )
    for steps in SEMITONES:
        key = analyse(shift_pitch(audio, steps)).key
        moved = (key.tonic_pitch_class - base.key.tonic_pitch_class) % 12
        row["pitch"].append(
            {
                "semitones": steps,
                "key": key.name,
                "ok": moved == steps % 12 and key.mode == base.key.mode,
            }
        )
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Share of copies whose tempo ratio (within 2%) or key shift came out as made."""
    tempo = [c["ok"] for r in rows for c in r["tempo"]]
    pitch = [c["ok"] for r in rows for c in r["pitch"]]
    return {
        "tempo_ok": float(np.mean(tempo)) if tempo else float("nan"),
        "key_ok": float(np.mean(pitch)) if pitch else float("nan"),
        "tempo_copies": len(tempo),
        "key_copies": len(pitch),
    }


def report_lines(summary: dict[str, float], rows: list[dict[str, Any]]) -> list[str]:
    """Markdown section: the two shares against the 95% target, then the failures."""
    lines = [
        "",
        "## Stretched and shifted copies of real recordings",
        "",
        f"{len(rows)} recordings (first {EXCERPT_S:.0f} s), each stretched to tempo ratios "
        f"{', '.join(str(r) for r in TEMPO_RATIOS)} (audiotsm WSOLA) and transposed by "
        f"{', '.join(f'{s:+d}' for s in SEMITONES)} semitones (librosa phase vocoder); Segue's "
        "estimate on each copy compared with its estimate on the original.",
        "",
        "| check | copies | correct | target | met |",
        "|---|---|---|---|---|",
        f"| tempo ratio within 2% | {summary['tempo_copies']} | {summary['tempo_ok']:.1%} | "
        f">= 95% | {'yes' if summary['tempo_ok'] >= 0.95 else 'NO'} |",
        f"| key moved by the shift (same mode) | {summary['key_copies']} | "
        f"{summary['key_ok']:.1%} | >= 95% | {'yes' if summary['key_ok'] >= 0.95 else 'NO'} |",
        "",
        "Misses:",
        "",
    ]
    for r in rows:
        for c in r["tempo"]:
            if not c["ok"]:
                lines.append(
                    f"- {r['name'][:48]}: tempo x{c['ratio']} measured x{c['measured']:.3f} "
                    f"(original {r['bpm']:.1f} BPM)"
                )
        for c in r["pitch"]:
            if not c["ok"]:
                lines.append(
                    f"- {r['name'][:48]}: {c['semitones']:+d} semitones: {r['key']} -> {c['key']}"
                )
    return lines
