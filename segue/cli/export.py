"""`segue export FORMAT -o OUT`: beat grids, cues and keys into DJ software.

    segue export rekordbox --analyses DIR -o segue.xml           # every analysis in DIR
    segue export traktor SONG_ID... -o set.nml --playlist "Friday" # songs from the matcher
    segue export mixxx --analyses DIR --mixxx-db ~/.mixxx/mixxxdb.sqlite -o mixxxdb.segue.sqlite
    segue export m3u SONG_ID... -o set.m3u8

`segue playlist SEED... --export rekordbox -o set.xml` writes a planned playlist the same way
(see `add_plan_export_options`). What a song's export leaves out (a grid that is not
confident, a key that is a guess) is printed with the reason; bad input (an unknown song id, a
folder without analyses) fails with a message and leaves no file behind.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, get_args

from segue.cli.common import DEFAULT_MATCHER, add_target, describe_error, fail
from segue.client.errors import SegueError
from segue.client.matcher import MatcherClient
from segue.export import FORMATS, ExportError, ExportOptions, Format, export_tracks
from segue.export.paths import DEFAULT_TRAKTOR_VOLUME
from segue.export.sources import SongSource, fetch_from_matcher, load_folder
from segue.export.track import KeyNotation, TrackFacts, track_facts
from segue.v1 import matcher_pb2

# Formats a planned playlist goes to (Mixxx imports M3U8 playlists).
PLAYLIST_FORMATS: tuple[Format, ...] = ("rekordbox", "traktor", "m3u")


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="export beat grids, cues and keys to Rekordbox, Traktor, Mixxx or M3U8",
        description="Writes songs' beat grids, section and entry/exit cues and keys for DJ "
        "software: Rekordbox XML, Traktor NML, a copy of a Mixxx library, or an M3U8 "
        "playlist. Songs come from the matcher's library (SONG_ID...) or from a folder of "
        "analysis JSON files (--analyses DIR, as `segue analyze --out-dir` writes them).",
    )
    parser.add_argument("format", choices=FORMATS, help="what to write")
    parser.add_argument(
        "songs", nargs="*", metavar="SONG_ID",
        help="songs to export, in order (with --analyses: default every song in DIR)",
    )  # fmt: skip
    parser.add_argument(
        "--analyses", type=Path, metavar="DIR",
        help="read analyses from this folder instead of the matcher",
    )  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="file to write (replaced whole, or left alone on error)")  # fmt: skip
    parser.add_argument("--playlist", metavar="NAME",
                        help="also put the songs, in order, in a playlist so named")  # fmt: skip
    parser.add_argument("--mixxx-db", type=Path, metavar="MIXXXDB",
                        help="the Mixxx library to copy (mixxxdb.sqlite; only read)")  # fmt: skip
    _add_format_options(parser)
    add_target(parser, "matcher", DEFAULT_MATCHER)
    parser.set_defaults(func=run)


def _add_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-notation", choices=get_args(KeyNotation), default="musical",
        help="how keys are written: musical (Am) or camelot (8A); default musical",
    )  # fmt: skip
    parser.add_argument(
        "--traktor-volume", default=DEFAULT_TRAKTOR_VOLUME, metavar="NAME",
        help="Traktor's name of the start-up disk, for paths outside /Volumes/ "
        f"(default {DEFAULT_TRAKTOR_VOLUME!r})",
    )  # fmt: skip


def add_plan_export_options(parser: argparse.ArgumentParser) -> None:
    """`segue playlist` options that write the planned set for DJ software."""
    group = parser.add_argument_group("export the planned set")
    group.add_argument("--export", choices=PLAYLIST_FORMATS, metavar="FORMAT",
                       help=f"write the set as {', '.join(PLAYLIST_FORMATS)}")  # fmt: skip
    group.add_argument("-o", "--output", type=Path, metavar="OUT", help="file for --export")
    group.add_argument("--playlist-name", metavar="NAME",
                       help="the playlist's name (default: Segue from SEED)")  # fmt: skip
    _add_format_options(parser)


def _options(args: argparse.Namespace, playlist: str | None) -> ExportOptions:
    return ExportOptions(
        playlist=playlist,
        key_notation=args.key_notation,
        traktor_volume=args.traktor_volume,
        mixxx_library=getattr(args, "mixxx_db", None),
    )


async def _from_matcher(address: str, song_ids: Sequence[str]) -> list[SongSource]:
    async with MatcherClient(address) as matcher:
        return await fetch_from_matcher(matcher, song_ids)


def _sources(args: argparse.Namespace) -> list[SongSource]:
    if args.analyses is not None:
        return load_folder(args.analyses, args.songs)
    if not args.songs:
        raise ExportError("name the songs to export (SONG_ID...) or a folder (--analyses DIR)")
    return asyncio.run(_from_matcher(args.matcher, args.songs))


def _write(fmt: Format, tracks: list[TrackFacts], out: Path, options: ExportOptions) -> int:
    notes = export_tracks(fmt, tracks, out, options)
    for note in notes:
        print(f"segue: note: {note}", file=sys.stderr)
    # Traktor takes a grid of one tempo only (segue.export.traktor).
    gridded = sum(
        1 for t in tracks if t.grid is not None and (fmt != "traktor" or len(t.grid.segments) == 1)
    )
    playlist = f", playlist {options.playlist!r}" if options.playlist else ""
    grids = "" if fmt in ("m3u", "mixxx") else f", {gridded} with a beat grid"
    print(f"wrote {out} ({fmt}): {len(tracks)} song(s){grids}{playlist}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.format == "mixxx" and args.mixxx_db is None:
        return fail(
            "the Mixxx export copies your Mixxx library: give --mixxx-db PATH, the "
            "mixxxdb.sqlite in Mixxx's settings folder (~/.mixxx/ on Linux)"
        )
    try:
        sources = _sources(args)
        tracks = [track_facts(s.analysis, s.metadata) for s in sources]
        return _write(args.format, tracks, args.output, _options(args, args.playlist))
    except ExportError as e:
        return fail(str(e))
    except SegueError as e:
        return fail(describe_error(e))


Plan = Coroutine[Any, Any, matcher_pb2.PlanPlaylistResponse]


async def _plan_and_songs(
    address: str, plan: Callable[[], Plan]
) -> tuple[matcher_pb2.PlanPlaylistResponse, list[SongSource]]:
    response = await plan()
    songs = await _from_matcher(address, [step.song_id for step in response.steps])
    return response, songs


def export_plan(args: argparse.Namespace, plan: Callable[[], Plan]) -> int:
    """Plans the playlist (`plan` makes the call) and writes it as `args.export`; the songs'
    hot cues are the plan's entry and exit points."""
    if args.output is None:
        return fail("--export needs -o/--output")
    try:
        response, sources = asyncio.run(_plan_and_songs(args.matcher, plan))
        tracks = [
            track_facts(s.analysis, s.metadata, entry_s=step.entry_time_s,
                        exit_s=step.exit_time_s)
            for step, s in zip(response.steps, sources, strict=True)
        ]  # fmt: skip
        name = args.playlist_name or f"Segue from {args.seeds[0]}"
        return _write(args.export, tracks, args.output, _options(args, name))
    except ExportError as e:
        return fail(str(e))
    except SegueError as e:
        return fail(describe_error(e))


__all__ = ["PLAYLIST_FORMATS", "add_parser", "add_plan_export_options", "export_plan", "run"]
