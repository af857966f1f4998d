"""`segue mix A B -o out.mp3`: render the transition from song A into song B."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from segue.audio import DecodeError, decode, encode
from segue.cli.common import add_target, fail, message_to_json, print_json
from segue.v1 import mixer_pb2

CURVES = {"equal-power": mixer_pb2.FADE_CURVE_EQUAL_POWER, "linear": mixer_pb2.FADE_CURVE_LINEAR,
          "s-curve": mixer_pb2.FADE_CURVE_S_CURVE}
RATE = 44100


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("mix", help="render a transition from song A into song B",
                              description=__doc__)
    p.add_argument("songs", nargs="*", help="outgoing and incoming audio files (A B)")
    p.add_argument("-o", "--output", required=True, help="output file (.wav .flac .mp3 .ogg)")
    p.add_argument("--plot", help="write a PNG of the transition here (with --local)")
    p.add_argument("--bars", type=int, help="overlap length in bars")
    p.add_argument("--seconds", type=float, help="overlap length in seconds")
    p.add_argument("--curve", choices=sorted(CURVES), default="equal-power")
    p.add_argument("--no-bass-swap", action="store_true", help="keep both basses in the overlap")
    p.add_argument("--filter-sweep", action="store_true")
    p.add_argument("--tempo-ramp-bars", type=int, default=0)
    p.add_argument("--key-shift", action="store_true", help="allow a one-semitone shift of B")
    p.add_argument("--cue-out", type=float, default=0.0, help="where A is gone (s in A)")
    p.add_argument("--cue-in", type=float, default=0.0, help="where B is fully in (s in B)")
    p.add_argument("--context", type=float, default=0.0, help="seconds around the overlap")
    p.add_argument("--lufs", type=float, default=0.0, help="target loudness (default -14)")
    p.add_argument("--local", action="store_true", help="render in this process, no server")
    add_target(p, "mixer", "127.0.0.1:50053")
    p.set_defaults(func=run)


def _style(args: argparse.Namespace) -> mixer_pb2.TransitionStyle:
    style = mixer_pb2.TransitionStyle(
        curve=CURVES[args.curve], eq_bass_swap=not args.no_bass_swap,
        filter_sweep=args.filter_sweep, tempo_ramp_bars=args.tempo_ramp_bars,
        allow_key_shift=args.key_shift)
    if args.bars:
        style.bars = args.bars
    elif args.seconds:
        style.seconds = args.seconds
    else:
        style.auto = True
    return style


def _format(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("wav", "flac", "mp3", "ogg"):
        raise ValueError(f"output must end in .wav, .flac, .mp3 or .ogg, not {path.suffix!r}")
    return fmt


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes via a temporary file in the same folder: no partial file on failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_local(a: Path, b: Path, config: mixer_pb2.RenderConfig, plot: str | None = None
                 ) -> tuple[np.ndarray, mixer_pb2.QualityReport]:
    """Renders in this process with the mixer's own code (no server needed)."""
    from services.mixer.excerpt import Excerpt
    from services.mixer.render import Params, Style, render_transition

    params = Params(rate_hz=RATE, target_lufs=config.target_loudness_lufs or -14.0,
                    context_s=config.context_s or 4.0)
    ea = Excerpt("outgoing", decode(a, RATE, channels=2).T.copy(), RATE,
                 mixer_pb2.ExcerptInfo(encoded=True, cue_s=config.outgoing.cue_s))
    eb = Excerpt("incoming", decode(b, RATE, channels=2).T.copy(), RATE,
                 mixer_pb2.ExcerptInfo(encoded=True, cue_s=config.incoming.cue_s))
    rendered = render_transition(ea, eb, Style.from_proto(config.style), params)
    if plot:
        from services.mixer.plot import plot_transition

        plot_transition(rendered, plot, f"{a.stem} -> {b.stem}")
    return rendered.audio, rendered.report


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    try:
        fmt = _format(out)
        if len(args.songs) != 2:
            return fail("give two songs: A (outgoing) and B (incoming)")
        a, b = Path(args.songs[0]), Path(args.songs[1])
        config = mixer_pb2.RenderConfig(target_loudness_lufs=args.lufs, context_s=args.context)
        config.style.CopyFrom(_style(args))
        config.outgoing.cue_s, config.incoming.cue_s = args.cue_out, args.cue_in
        if args.local:
            audio, report = render_local(a, b, config, args.plot)
            _write_atomically(out, encode(np.ascontiguousarray(audio.T), RATE, fmt))
        else:
            from segue.client.mixer import Excerpt, MixerClient

            async def remote() -> tuple[bytes, mixer_pb2.QualityReport]:
                async with MixerClient(args.mixer) as mixer:
                    result = await mixer.render_transition(
                        Excerpt.from_file(a, cue_s=args.cue_out),
                        Excerpt.from_file(b, cue_s=args.cue_in), style=config.style,
                        output_format=fmt, target_loudness_lufs=args.lufs,
                        context_s=args.context)
                    return result.audio, result.report

            data, report = asyncio.run(remote())
            _write_atomically(out, data)
            if args.plot:
                print("segue: --plot needs --local (the plot is drawn from the render itself)")
        print_json(message_to_json(report))
        return 0
    except (ValueError, DecodeError, OSError) as e:
        return fail(str(e))
    except Exception as e:
        if type(e).__name__ == "AioRpcError":
            return fail(f"mixer: {e.details()}")  # type: ignore[attr-defined]
        raise

