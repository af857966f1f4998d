"""`segue mix A B -o out.mp3`: render the transition from song A into song B.

`segue mix --playlist SEED -n 10 -o set.mp3` asks the matcher to plan a playlist from SEED and
renders it, in this process, as one continuous mix, with set.cue and set.json (cue sheet and
per-transition quality reports) next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segue.audio import DecodeError, decode, encode
from segue.cli.common import add_target, fail, message_to_json, print_json
from segue.v1 import common_pb2, matcher_pb2, mixer_pb2

if TYPE_CHECKING:
    from segue.mixing.continuous_mix import ContinuousMix

CURVES = {
    "equal-power": mixer_pb2.FADE_CURVE_EQUAL_POWER,
    "linear": mixer_pb2.FADE_CURVE_LINEAR,
    "s-curve": mixer_pb2.FADE_CURVE_S_CURVE,
}
RATE = 44100


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mix",
        help="render a transition from song A into song B, or a "
        "whole playlist as one continuous mix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("songs", nargs="*", help="outgoing and incoming audio files (A B)")
    p.add_argument(
        "--playlist",
        metavar="SEED",
        help="song id to start a playlist from (asks the matcher's PlanPlaylist)",
    )
    p.add_argument("-n", "--num-songs", type=int, default=10, help="songs in the playlist")
    p.add_argument(
        "--analyses",
        type=Path,
        metavar="DIR",
        help="with --playlist: DIR/<song id>.json analyses (segue analyze --out-dir, the "
        "demo's analyses/) give the songs their beats and keys; others are analysed here",
    )
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
    add_target(p, "matcher", "127.0.0.1:50052")
    p.set_defaults(func=run)


def _style(args: argparse.Namespace) -> mixer_pb2.TransitionStyle:
    style = mixer_pb2.TransitionStyle(
        curve=CURVES[args.curve],
        eq_bass_swap=not args.no_bass_swap,
        filter_sweep=args.filter_sweep,
        tempo_ramp_bars=args.tempo_ramp_bars,
        allow_key_shift=args.key_shift,
    )
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


def render_local(
    a: Path, b: Path, config: mixer_pb2.RenderConfig, plot: str | None = None
) -> tuple[np.ndarray, mixer_pb2.QualityReport]:
    """Renders in this process with the mixer's own code (no server needed)."""
    from segue.mixing.excerpt import Excerpt
    from segue.mixing.render import Params, Style, render_transition

    params = Params(
        rate_hz=RATE,
        target_lufs=config.target_loudness_lufs or -14.0,
        context_s=config.context_s or 4.0,
    )
    ea = Excerpt(
        "outgoing",
        decode(a, RATE, channels=2).T.copy(),
        RATE,
        mixer_pb2.ExcerptInfo(encoded=True, cue_s=config.outgoing.cue_s),
    )
    eb = Excerpt(
        "incoming",
        decode(b, RATE, channels=2).T.copy(),
        RATE,
        mixer_pb2.ExcerptInfo(encoded=True, cue_s=config.incoming.cue_s),
    )
    rendered = render_transition(ea, eb, Style.from_proto(config.style), params)
    if plot:
        from segue.mixing.plot import plot_transition

        plot_transition(rendered, plot, f"{a.stem} -> {b.stem}")
    return rendered.audio, rendered.report


def write_mix(mix: ContinuousMix, out: Path, plot: str | None = None) -> list[Path]:
    """Writes the mix's audio, its .cue and .json cue sheets (and a plot); returns the paths.

    Every file goes through a temporary file, so a failure leaves no partial output.
    """
    fmt = _format(out)
    cue, sheet = out.with_suffix(".cue"), out.with_suffix(".json")
    _write_atomically(out, encode(np.ascontiguousarray(mix.audio.T), mix.rate_hz, fmt))
    _write_atomically(cue, mix.cue_sheet(out.name, out.stem).encode())
    _write_atomically(sheet, (mix.to_json_text() + "\n").encode())
    written = [out, cue, sheet]
    if plot:
        from segue.mixing.plot import plot_mix

        plot_mix(mix, plot, out.stem)
        written.append(Path(plot))
    return written


async def plan_playlist(
    address: str, seed: str, num_songs: int
) -> matcher_pb2.PlanPlaylistResponse:
    from segue.client.matcher import MatcherClient

    async with MatcherClient(address) as matcher:
        return await matcher.plan_playlist([seed], num_songs=num_songs)


def render_playlist(
    plan: matcher_pb2.PlanPlaylistResponse, args: argparse.Namespace
) -> ContinuousMix:
    """Renders the matcher's plan in this process (the mixer API renders one pair at a time)."""
    from segue.mixing.continuous_mix import render_continuous_mix, tracks_from_plan
    from segue.mixing.render import Params, Style

    params = Params(rate_hz=RATE, target_lufs=args.lufs or -14.0)
    style = Style.from_proto(_style(args))
    analyses = load_analyses(args.analyses, [s.song_id for s in plan.steps])
    return render_continuous_mix(tracks_from_plan(plan, RATE, analyses), style, params)


def load_analyses(folder: Path | None, song_ids: list[str]) -> dict[str, common_pb2.SongAnalysis]:
    """The analyses DIR/<song id>.json that exist, as written by `segue analyze --out-dir`."""
    from google.protobuf.json_format import Parse

    found: dict[str, common_pb2.SongAnalysis] = {}
    if folder is None:
        return found
    for song_id in song_ids:
        path = folder / f"{song_id}.json"
        if path.is_file():
            found[song_id] = Parse(
                path.read_text(), common_pb2.SongAnalysis(), ignore_unknown_fields=True
            )
    return found


def run_playlist(args: argparse.Namespace, out: Path) -> int:
    _format(out)
    if args.songs:
        return fail("give either two songs or --playlist SEED, not both")
    if not 2 <= args.num_songs <= 200:
        return fail("-n must be 2 to 200")
    plan = asyncio.run(plan_playlist(args.matcher, args.playlist, args.num_songs))
    if not plan.steps:
        return fail(f"the matcher planned no playlist from {args.playlist!r}")
    mix = render_playlist(plan, args)
    written = write_mix(mix, out, args.plot)
    summary = mix.to_json()
    summary["files"] = [str(p) for p in written]
    print_json(
        {
            k: summary[k]
            for k in ("duration_s", "loudness_lufs", "true_peak_dbtp", "speed_x_realtime", "files")
        }
        | {
            "songs": [c.title for c in mix.cues],
            "transitions": [t.report.length_reason for t in mix.transitions],
        }
    )
    return 0


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    try:
        if args.playlist:
            return run_playlist(args, out)
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
                        Excerpt.from_file(b, cue_s=args.cue_in),
                        style=config.style,
                        output_format=fmt,
                        target_loudness_lufs=args.lufs,
                        context_s=args.context,
                    )
                    return result.audio, result.report

            data, report = asyncio.run(remote())
            _write_atomically(out, data)
            if args.plot:
                print("segue: --plot needs --local (the plot is drawn from the render itself)")
        print_json(message_to_json(report))
        return 0
    except (ValueError, DecodeError, OSError) as e:  # MixInputError is a ValueError
        return fail(str(e))
    except Exception as e:
        if type(e).__name__ == "AioRpcError":
            return fail(f"mixer: {e.details()}")  # type: ignore[attr-defined]
        raise
