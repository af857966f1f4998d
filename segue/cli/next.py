"""`segue next SONG`: the best segments of other songs to move into from SONG."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from segue.cli.common import DEFAULT_MATCHER, add_target, display_name, show_response
from segue.client.matcher import MatcherClient
from segue.v1 import matcher_pb2


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    """Filter flags shared by next, similar and playlist."""
    group = parser.add_argument_group("filters")
    group.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="SONG_ID",
        help="never suggest this song (repeatable)",
    )
    group.add_argument(
        "--exclude-artist",
        action="append",
        default=[],
        metavar="ARTIST",
        help="never suggest this artist (repeatable)",
    )
    group.add_argument("--min-bpm", type=float, default=0.0, help="lowest tempo")
    group.add_argument("--max-bpm", type=float, default=0.0, help="highest tempo")
    group.add_argument(
        "--tempo-compatible",
        action="store_true",
        help="only tempos within 6%% (counting half and double time)",
    )
    group.add_argument(
        "--key-compatible",
        action="store_true",
        help="only keys next to this one on the Camelot wheel",
    )
    group.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                       help="payload condition, e.g. genre=house or extra.mood=calm")  # fmt: skip


def filter_from_args(args: argparse.Namespace) -> matcher_pb2.Filter:
    spec = matcher_pb2.Filter(
        exclude_song_ids=args.exclude,
        exclude_artists=args.exclude_artist,
        tempo_compatible=args.tempo_compatible,
        key_compatible=args.key_compatible,
    )
    if args.min_bpm or args.max_bpm:
        spec.tempo_range.CopyFrom(
            matcher_pb2.TempoRange(min_bpm=args.min_bpm, max_bpm=args.max_bpm)
        )
    for condition in args.where:
        field, sep, value = condition.partition("=")
        if not sep:
            raise ValueError(f"--where needs FIELD=VALUE, got {condition!r}")
        spec.conditions.append(matcher_pb2.PayloadCondition(field=field, equals=value))
    return spec


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "next",
        help="best next segments to move into from a song",
        description="Ranks segments of other songs to move into when leaving SONG at its end "
        "(or at --at seconds), with the score explained component by component.",
    )
    parser.add_argument("song", metavar="SONG", help="song id as indexed")
    parser.add_argument(
        "--at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="leave at the segment boundary nearest to this time (default: end)",
    )
    parser.add_argument("-k", type=int, default=10, help="results (default 10)")
    parser.add_argument(
        "--several-per-song", action="store_true", help="allow several segments of one song"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_filter_options(parser)
    add_target(parser, "matcher", DEFAULT_MATCHER)
    parser.set_defaults(func=run)


async def _query(args: argparse.Namespace) -> matcher_pb2.NextSegmentResponse:
    async with MatcherClient(args.matcher) as matcher:
        return await matcher.next_segment(
            args.song, time_s=args.at, k=args.k, filter=filter_from_args(args),
            allow_multiple_per_song=args.several_per_song,
        )  # fmt: skip


def _table(args: argparse.Namespace, response: matcher_pb2.NextSegmentResponse) -> Table:
    table = Table(title=f"After {args.song} (leaving at {response.exit_time_s:.1f} s)")
    for column in ("#", "song", "enter at", "score", "transition", "feel", "tempo", "key",
                   "energy", "bpm", "camelot"):  # fmt: skip
        table.add_column(column, justify="left" if column == "song" else "right")
    for rank, c in enumerate(response.candidates, 1):
        b = c.breakdown
        name = display_name(c.metadata, c.song_id)
        table.add_row(
            str(rank), name, f"{c.entry_time_s:.1f} s", f"{c.score:.3f}",
            f"{b.transition:.2f}", f"{b.feel:.2f}", f"{b.tempo:.2f}", f"{b.key:.2f}",
            f"{b.energy:.2f}", f"{c.tempo_bpm:.1f}" if c.tempo_bpm else "-", c.key.camelot or "-",
        )  # fmt: skip
    return table


def run(args: argparse.Namespace) -> int:
    return show_response(_query(args), args.json, lambda r: _table(args, r))
