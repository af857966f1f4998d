"""`segue similar SONG`: songs that feel like SONG."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from segue.cli.common import DEFAULT_MATCHER, add_target, show_response
from segue.cli.next import add_filter_options, filter_from_args
from segue.client.matcher import MatcherClient
from segue.v1 import matcher_pb2


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "similar",
        help="songs that feel like a song",
        description="Nearest songs to SONG by feel (cosine), one row per song.",
    )
    parser.add_argument("song", metavar="SONG", help="song id as indexed")
    parser.add_argument("-k", type=int, default=10, help="results (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_filter_options(parser)
    add_target(parser, "matcher", DEFAULT_MATCHER)
    parser.set_defaults(func=run)


async def _query(args: argparse.Namespace) -> matcher_pb2.SimilarSongsResponse:
    async with MatcherClient(args.matcher) as matcher:
        return await matcher.similar_songs(args.song, k=args.k, filter=filter_from_args(args))


def _table(args: argparse.Namespace, response: matcher_pb2.SimilarSongsResponse) -> Table:
    table = Table(title=f"Songs like {args.song}")
    for column in ("#", "song", "artist", "genre", "similarity"):
        table.add_column(column, justify="right" if column in ("#", "similarity") else "left")
    for rank, s in enumerate(response.songs, 1):
        table.add_row(
            str(rank), s.metadata.title or s.song_id, s.metadata.artist or "-",
            s.metadata.genre or "-", f"{s.similarity:.3f}",
        )  # fmt: skip
    return table


def run(args: argparse.Namespace) -> int:
    return show_response(_query(args), args.json, lambda r: _table(args, r))
