"""Pictures of a transition (waveforms, spectrogram across the seam, gains, beat grids) or a mix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from scipy.signal import resample_poly

from .continuous_mix import ContinuousMix
from .render import Rendered


def plot_transition(rendered: Rendered, path: str | Path, title: str = "") -> None:
    """Writes a PNG with four aligned panels over the output's time axis."""
    audio, rate = rendered.audio, rendered.rate_hz
    mono = audio.mean(axis=0)
    fig, axes = plt.subplots(
        4, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [1.2, 1.6, 1, 0.6]}
    )
    _waveform_with_shares(axes[0], mono, rate, rendered)
    axes[1].specgram(mono, NFFT=2048, Fs=rate, noverlap=1536, cmap="magma", scale="dB", vmin=-120)
    axes[1].set_ylim(20, 8000)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("Hz")
    _gains(axes[2], rendered)
    _beats(axes[3], rendered)
    for ax in axes:
        ax.axvspan(rendered.overlap_start_s, rendered.overlap_end_s, color="green", alpha=0.06)
    report = rendered.report
    fig.suptitle(
        f"{title}  {report.overlap_bars} bars, tempo x{report.tempo_ratio:.3f}, "
        f"beat error {report.beat_alignment_error_ms:.1f} ms, "
        f"{report.output_loudness_lufs:.1f} LUFS, {report.true_peak_dbtp:.1f} dBTP",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _waveform_with_shares(ax: Axes, mono: npt.NDArray[np.float32], rate: int, r: Rendered) -> None:
    """The mix's waveform, with each song's share of it shaded by its gain."""
    t = np.arange(mono.size) / rate
    env_t = np.arange(r.gain_outgoing.size) / 100.0
    step = max(1, mono.size // 20000)
    gain_a = np.interp(t[::step], env_t, r.gain_outgoing)
    gain_b = np.interp(t[::step], env_t, r.gain_incoming)
    ax.plot(t[::step], mono[::step], color="0.6", lw=0.4, label="mix")
    peak = float(np.abs(mono).max()) or 1.0
    for gain, colour, label in (
        (gain_a, "tab:blue", "outgoing (A) share"),
        (gain_b, "tab:orange", "incoming (B) share"),
    ):
        ax.fill_between(t[::step], -gain * peak, gain * peak, color=colour, alpha=0.15, label=label)
    ax.set_ylabel("waveform")
    ax.legend(loc="upper right", fontsize=7)


def _gains(ax: Axes, rendered: Rendered) -> None:
    """Both songs' fade gains, and their bass gains when the bass was swapped."""
    env_t = np.arange(rendered.gain_outgoing.size) / 100.0
    ax.plot(env_t, rendered.gain_outgoing, label="gain A", color="tab:blue")
    ax.plot(env_t, rendered.gain_incoming, label="gain B", color="tab:orange")
    if rendered.bass_outgoing.size:
        bass_t = np.arange(rendered.bass_outgoing.size) / 100.0
        ax.plot(bass_t, rendered.bass_outgoing, "--", color="tab:blue", label="bass A")
        ax.plot(bass_t, rendered.bass_incoming, "--", color="tab:orange", label="bass B")
    ax.set_ylabel("gain")
    ax.legend(loc="center right", fontsize=7)


def _beats(ax: Axes, rendered: Rendered) -> None:
    """A's and B's planned beats, and where B's beats were measured."""
    ax.vlines(rendered.beats_outgoing_s, 0.5, 1.0, color="tab:blue", lw=0.8)
    ax.vlines(rendered.beats_incoming_s, 0.0, 0.5, color="tab:orange", lw=0.8)
    measured = rendered.beats_incoming_measured_s
    measured = measured[np.isfinite(measured)]
    ax.plot(measured, np.full(measured.size, 0.25), "k|", ms=8, label="B measured")
    ax.set_yticks([0.25, 0.75], ["B beats", "A beats"])
    ax.set_xlabel("seconds")


def plot_mix(mix: ContinuousMix, path: str | Path, title: str = "") -> None:
    """Writes a PNG of a whole mix: waveform, spectrogram, every song's gain, the transitions."""
    rate = mix.rate_hz
    # A 11 kHz mono copy keeps the spectrogram of a long set quick to draw.
    mono = resample_poly(mix.audio.mean(axis=0), 1, 4) if rate >= 32000 else mix.audio.mean(axis=0)
    plot_rate = rate / 4 if rate >= 32000 else rate
    t = np.arange(mono.size) / plot_rate
    fig, axes = plt.subplots(
        3, 1, figsize=(14, 8), sharex=True, gridspec_kw={"height_ratios": [1, 1.6, 1.2]}
    )
    step = max(1, mono.size // 40000)
    axes[0].plot(t[::step], mono[::step], color="0.4", lw=0.3)
    axes[0].set_ylabel("waveform")
    axes[1].specgram(
        mono, NFFT=1024, Fs=plot_rate, noverlap=512, cmap="magma", scale="dB", vmin=-120
    )
    axes[1].set_ylim(30, plot_rate / 2)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("Hz")
    env_t = np.arange(mix.gains.shape[1]) / 100.0
    colours = plt.get_cmap("tab10")
    for i, cue in enumerate(mix.cues):
        axes[2].plot(
            env_t,
            mix.gains[i],
            color=colours(i % 10),
            lw=1.2,
            label=f"{cue.number}. {cue.title[:28]}",
        )
    axes[2].set_ylabel("gain")
    axes[2].set_xlabel("seconds")
    axes[2].legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(5, len(mix.cues)), fontsize=7
    )
    for tr in mix.transitions:
        for ax in axes:
            ax.axvspan(tr.overlap_start_s, tr.overlap_end_s, color="green", alpha=0.08)
        rep = tr.report
        beat = (
            "free-time fade"
            if not np.isfinite(rep.beat_alignment_error_ms)
            else f"x{rep.tempo_ratio:.3f}, {rep.beat_alignment_error_ms:.1f} ms"
        )
        axes[0].annotate(
            f"{rep.overlap_bars} bars\n{beat}",
            (tr.overlap_start_s, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=6,
            va="top",
        )
    for cue in mix.cues:
        axes[2].axvline(cue.start_s, color="k", lw=0.6, ls=":")
    fig.suptitle(
        f"{title}  {len(mix.cues)} songs, {mix.duration_s / 60:.1f} min, "
        f"{mix.loudness_lufs:.1f} LUFS, {mix.true_peak_dbtp:.1f} dBTP",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
