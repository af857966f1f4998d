"""A picture of a structure analysis: waveform, spectrogram, beats, sections and cue points."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import scipy.signal

from segue.structure.result import StructureResult

_SECTION_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948")


def plot_analysis(
    pcm: npt.ArrayLike, sample_rate_hz: int, result: StructureResult, path: str | Path
) -> None:
    """Writes a PNG with the waveform, a log-frequency spectrogram, beats (downbeats bold),
    labelled section bands and entry/exit cue points."""
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    duration = len(audio) / sample_rate_hz
    fig, (wave_ax, spec_ax) = plt.subplots(
        2, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    step = max(1, len(audio) // 20000)
    envelope = np.abs(audio[: len(audio) // step * step].reshape(-1, step)).max(axis=1)
    times = np.arange(len(envelope)) * step / sample_rate_hz
    wave_ax.fill_between(times, -envelope, envelope, color="#555555", linewidth=0)
    wave_ax.set_ylim(-1.05, 1.05)
    wave_ax.set_ylabel("amplitude")
    for i, section in enumerate(result.sections):
        colour = _SECTION_COLOURS[ord(section.letter[0]) % len(_SECTION_COLOURS)]
        for ax in (wave_ax, spec_ax):
            ax.axvspan(section.start_s, section.end_s, color=colour, alpha=0.15, linewidth=0)
        label = (
            section.letter
            if section.function == "unknown"
            else f"{section.letter} {section.function}"
        )
        wave_ax.text(section.start_s + 0.2, 0.85 - 0.12 * (i % 2), label, fontsize=9, weight="bold")
    for t, position in zip(result.beat_times_s, result.beat_positions, strict=True):
        downbeat = position == 1
        colour = "#d62728" if downbeat else "#1f77b4"
        width, alpha = (1.2, 0.8) if downbeat else (0.4, 0.5)
        wave_ax.axvline(t, color=colour, linewidth=width, alpha=alpha)
    if len(audio) >= 256:
        freqs, seg_times, power = scipy.signal.spectrogram(
            audio, fs=sample_rate_hz, nperseg=1024, noverlap=768, window="hann"
        )
        keep = (freqs >= 30) & (freqs <= 8000)
        spec_ax.pcolormesh(seg_times, freqs[keep], 10 * np.log10(power[keep] + 1e-10),
                           shading="auto", cmap="magma")  # fmt: skip
        spec_ax.set_yscale("log")
    for cue in result.cue_points:
        colour = "#2ca02c" if cue.kind == "entry" else "#9467bd"
        for ax in (wave_ax, spec_ax):
            ax.axvline(cue.time_s, color=colour, linewidth=2.0, linestyle="--")
        spec_ax.text(cue.time_s, 40, f"{cue.kind} {cue.phrase_bars or '?'}b", color="white",
                     fontsize=8, rotation=90, va="bottom")  # fmt: skip
    spec_ax.set_ylabel("Hz")
    spec_ax.set_xlabel("time (s)")
    spec_ax.set_xlim(0, duration)
    key = result.key
    fig.suptitle(
        f"{result.tempo_bpm:.1f} BPM (confidence {result.tempo_confidence:.2f}, stability "
        f"{result.tempo_stability:.2f}), {result.beats_per_bar}/4, {key.name} ({key.camelot}, "
        f"confidence {key.confidence:.2f})"
    )
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)
