"""`segue mix A B -o out.mp3`: render the transition from song A into song B.

`segue mix --playlist SEED -n 10 -o set.mp3` asks the matcher to plan a playlist from SEED and
has the mixer render it (RenderMix) as one continuous mix, with set.cue and set.json (cue
sheet and per-transition quality reports) next to it; set.json's "timeline" places every
song's gain curve, beat grid and sections on the mix's time axis (documented at
segue.mixing.continuous_mix.timeline_json). Each song's audio is read from the file
the matcher stores as its uri; its beats and key come from the analysis the matcher stores
(or from DIR/<song id>.json with --analyses). --local renders in this process instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segue.audio import DecodeError, decode, encode_planar
from segue.cli.common import add_target, describe_error, fail, message_to_json, print_json
from segue.client.errors import SegueError
from segue.files import write_atomically
from segue.v1 import common_pb2, matcher_pb2, mixer_pb2

if TYPE_CHECKING:
    from segue.client.mixer import MixSong, RenderedMix
    from segue.mixing.continuous_mix import ContinuousMix
    from segue.mixing.style import Style

CURVES = {
    "equal-power": mixer_pb2.FADE_CURVE_EQUAL_POWER,
    "linear": mixer_pb2.FADE_CURVE_LINEAR,
    "s-curve": mixer_pb2.FADE_CURVE_S_CURVE,
}
RATE = 44100
MAX_PLAYLIST_SONGS = 200


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
        help="with --playlist: DIR/<song id>.json analyses (segue analyze --out-dir) give "
        "those songs their beats and keys instead of the analyses the matcher stores",
    )
    p.add_argument("-o", "--output", required=True, help="output file (.wav .flac .mp3 .ogg)")
    p.add_argument("--plot", help="write a PNG of the mix here (for a pair of songs: with --local)")
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
    p.add_argument("--local", action="store_true", help="render in this process, no mixer")
    add_target(p, "mixer", "127.0.0.1:50053")
    add_target(p, "matcher", "127.0.0.1:50052")
    p.set_defaults(func=run)


def transition_style(args: argparse.Namespace) -> mixer_pb2.TransitionStyle:
    """The TransitionStyle the options ask for (auto length unless --bars or --seconds)."""
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


def playlist_style(args: argparse.Namespace) -> Style:
    """The validated Style every transition of a playlist's continuous mix is rendered with."""
    from segue.mixing.style import Style

    return Style.from_proto(transition_style(args))


def _format(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("wav", "flac", "mp3", "ogg"):
        raise ValueError(f"output must end in .wav, .flac, .mp3 or .ogg, not {path.suffix!r}")
    return fmt


def render_local(
    a: Path, b: Path, config: mixer_pb2.RenderConfig, plot: str | None = None
) -> tuple[np.ndarray, mixer_pb2.QualityReport]:
    """Renders in this process with the mixer's own code (no server needed)."""
    from segue.mixing.excerpt import Excerpt
    from segue.mixing.render import render_transition
    from segue.mixing.style import Params, Style

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
    write_atomically(out, encode_planar(mix.audio, mix.rate_hz, fmt))
    write_atomically(cue, mix.cue_sheet(out.name, out.stem).encode())
    write_atomically(sheet, (mix.to_json_text() + "\n").encode())
    written = [out, cue, sheet]
    if plot:
        from segue.mixing.plot import plot_mix

        plot_mix(mix, plot, out.stem)
        written.append(Path(plot))
    return written


def write_rendered_mix(result: RenderedMix, out: Path, plot: str | None = None) -> list[Path]:
    """Writes what the mixer's RenderMix returned, as `write_mix` does for a local render."""
    cue, sheet = out.with_suffix(".cue"), out.with_suffix(".json")
    write_atomically(out, result.audio)
    write_atomically(cue, result.cue.encode())
    write_atomically(sheet, (result.sheet_json + "\n").encode())
    written = [out, cue, sheet]
    if plot:
        from segue.mixing.plot import plot_mix

        plot_mix(mix_from_rendered(result), plot, out.stem)
        written.append(Path(plot))
    return written


def mix_from_rendered(result: RenderedMix) -> ContinuousMix:
    """The mixer's answer as a ContinuousMix (audio decoded from the file), e.g. to plot it."""
    from segue.mixing.continuous_mix import ContinuousMix, CueEntry, TransitionSummary

    sheet = json.loads(result.sheet_json)
    rate = result.sample_rate_hz
    # Lossy codecs pad the end: keep the mix's own length.
    frames = round(result.cue_sheet.duration_s * rate)
    audio = np.ascontiguousarray(decode(result.audio, rate, channels=2).T[:, :frames])
    points = int(frames / rate * 100.0) + 1  # plot_mix draws the gains at 100 points/s
    gains = np.zeros((len(result.gains), points))
    for lane in result.gains:
        start = round(lane.start_s * lane.rate_hz)
        values = np.asarray(lane.gain, dtype=np.float64)[: max(0, points - start)]
        gains[lane.song_index, start : start + values.size] = values
    transitions = [
        TransitionSummary(
            t.number,
            t.start_s,
            t.overlap_start_s,
            t.overlap_end_s,
            t.report,
            t.join_offset_samples,
            end_s=t.end_s,
            incoming_resume_s=t.incoming_resume_s,
        )
        for t in result.transitions
    ]
    return ContinuousMix(
        audio=audio,
        rate_hz=rate,
        cues=[CueEntry(**song) for song in sheet["songs"]],
        transitions=transitions,
        gains=gains,
        loudness_lufs=result.cue_sheet.loudness_lufs,
        true_peak_dbtp=result.cue_sheet.true_peak_dbtp,
        render_s=result.cue_sheet.render_s,
    )


async def plan_playlist(
    address: str, seed: str, num_songs: int
) -> matcher_pb2.PlanPlaylistResponse:
    from segue.client.matcher import MatcherClient

    async with MatcherClient(address) as matcher:
        return await matcher.plan_playlist([seed], num_songs=num_songs)


async def stored_analyses(
    address: str, song_ids: Sequence[str]
) -> dict[str, common_pb2.SongAnalysis]:
    """The analyses the matcher stores for these songs (GetSong), as the mixer fetches them."""
    from segue.client.matcher import MatcherClient

    found: dict[str, common_pb2.SongAnalysis] = {}
    async with MatcherClient(address) as matcher:
        for song_id in dict.fromkeys(song_ids):
            stored = await matcher.get_song(song_id)
            if stored.HasField("analysis"):
                found[song_id] = stored.analysis
    return found


def render_playlist(
    plan: matcher_pb2.PlanPlaylistResponse,
    args: argparse.Namespace,
    analyses: dict[str, common_pb2.SongAnalysis] | None = None,
) -> ContinuousMix:
    """Renders the matcher's plan in this process (`--local`).

    `analyses` (by song id) give songs their beats and keys, then DIR/<song id>.json from
    --analyses overrides them; songs with neither are analysed here.
    """
    from segue.mixing.continuous_mix import render_continuous_mix, tracks_from_plan
    from segue.mixing.style import Params

    params = Params(rate_hz=RATE, target_lufs=args.lufs or -14.0)
    found = dict(analyses or {})
    found.update(load_analyses(args.analyses, [s.song_id for s in plan.steps]))
    tracks = tracks_from_plan(plan, RATE, found)
    return render_continuous_mix(tracks, playlist_style(args), params, consume=True)


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


def songs_from_plan(
    plan: matcher_pb2.PlanPlaylistResponse, analyses: dict[str, common_pb2.SongAnalysis]
) -> list[MixSong]:
    """The plan's songs for RenderMix: each read from its metadata.uri as it is sent, with
    its analysis from `analyses` or else (by its song id) from the matcher.

    Raises ValueError (MixInputError) naming the step whose file is missing.
    """
    from segue.client.mixer import MixSong
    from segue.mixing.continuous_mix import step_uri

    songs = []
    for n, step in enumerate(plan.steps, start=1):
        uri = step_uri(step, n)
        if not Path(uri).is_file():
            raise ValueError(f"playlist step {n} ({step.song_id}): cannot read {uri}")
        songs.append(
            MixSong.from_file(
                uri,
                song_id=step.song_id,
                title=step.metadata.title or step.song_id,
                entry_s=step.entry_time_s,
                exit_s=step.exit_time_s,
                analysis=analyses.get(step.song_id),
            )
        )
    return songs


async def render_playlist_remote(
    plan: matcher_pb2.PlanPlaylistResponse, args: argparse.Namespace, out: Path
) -> RenderedMix:
    """Has the mixer render the matcher's plan as one continuous mix (RenderMix)."""
    from segue.client.mixer import MixerClient

    analyses = load_analyses(args.analyses, [s.song_id for s in plan.steps])
    songs = songs_from_plan(plan, analyses)
    async with MixerClient(args.mixer) as mixer:
        return await mixer.render_mix(
            songs,
            style=transition_style(args),
            output_format=_format(out),
            target_loudness_lufs=args.lufs,
            file_name=out.name,
            title=out.stem,
        )


def _summary(sheet: dict[str, Any], written: list[Path]) -> dict[str, Any]:
    """What `segue mix --playlist` prints: the mix's measurements, files, songs, reasons."""
    keys = ("duration_s", "loudness_lufs", "true_peak_dbtp", "speed_x_realtime")
    return {k: sheet[k] for k in keys} | {
        "files": [str(p) for p in written],
        "songs": [s["title"] for s in sheet["songs"]],
        "transitions": [t["report"].get("length_reason", "") for t in sheet["transitions"]],
    }


def run_playlist(args: argparse.Namespace, out: Path) -> int:
    _format(out)
    if args.songs:
        return fail("give either two songs or --playlist SEED, not both")
    if not 2 <= args.num_songs <= MAX_PLAYLIST_SONGS:
        return fail(f"-n must be 2 to {MAX_PLAYLIST_SONGS}")
    try:
        plan = asyncio.run(plan_playlist(args.matcher, args.playlist, args.num_songs))
        if len(plan.steps) < 2:
            return fail(
                f"the matcher planned {len(plan.steps)} song(s) from {args.playlist!r}; "
                "a mix needs at least 2"
            )
        stored = (
            asyncio.run(stored_analyses(args.matcher, [s.song_id for s in plan.steps]))
            if args.local
            else {}
        )
    except SegueError as e:
        return fail(describe_error(e))
    if args.local:
        mix = render_playlist(plan, args, stored)
        written = write_mix(mix, out, args.plot)
        sheet = mix.to_json()
    else:
        try:
            result = asyncio.run(render_playlist_remote(plan, args, out))
        except SegueError as e:
            return fail(describe_error(e))
        written = write_rendered_mix(result, out, args.plot)
        sheet = json.loads(result.sheet_json)
    print_json(_summary(sheet, written))
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
        config.style.CopyFrom(transition_style(args))
        config.outgoing.cue_s, config.incoming.cue_s = args.cue_out, args.cue_in
        if args.local:
            audio, report = render_local(a, b, config, args.plot)
            write_atomically(out, encode_planar(audio, RATE, fmt))
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

            try:
                data, report = asyncio.run(remote())
            except SegueError as e:
                return fail(describe_error(e))
            write_atomically(out, data)
            if args.plot:
                print("segue: --plot needs --local (the plot is drawn from the render itself)")
        print_json(message_to_json(report))
        return 0
    except (ValueError, DecodeError, OSError) as e:  # MixInputError is a ValueError
        return fail(str(e))
