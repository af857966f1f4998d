"""`segue playlist SEED -n 10`: plans an ordered playlist with cue points."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from segue.cli.common import DEFAULT_MATCHER, add_target, display_name, show_response
from segue.cli.export import add_plan_export_options, export_plan
from segue.cli.next import add_filter_options, filter_from_args
from segue.client.matcher import MatcherClient
from segue.v1 import matcher_pb2


def _curve(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from e


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "playlist",
        help="plan a playlist with cue points from seed songs",
        description="Plans an ordered playlist that starts with the first SEED and contains "
        "every SEED, chaining songs by their best transitions (beam search).",
    )
    parser.add_argument("seeds", nargs="+", metavar="SEED", help="seed song ids")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("-n", "--songs", type=int, default=None, help="songs (default 10)")
    length.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="approximate total playing time",
    )
    parser.add_argument(
        "--energy",
        type=_curve,
        default=[],
        metavar="E1,E2,...",
        help="target energy curve, 0 to 1, e.g. 0.3,0.8,0.5",
    )
    parser.add_argument("--beam", type=int, default=0, help="beam width (default: server's)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_filter_options(parser)
    add_plan_export_options(parser)
    add_target(parser, "matcher", DEFAULT_MATCHER)
    parser.set_defaults(func=run)


async def _plan(args: argparse.Namespace) -> matcher_pb2.PlanPlaylistResponse:
    async with MatcherClient(args.matcher, timeout_s=120) as matcher:
        return await matcher.plan_playlist(
            args.seeds,
            num_songs=None if args.duration is not None else (args.songs or 10),
            duration_s=args.duration,
            energy_curve=args.energy,
            filter=filter_from_args(args),
            beam_width=args.beam,
        )  # fmt: skip


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _table(args: argparse.Namespace, response: matcher_pb2.PlanPlaylistResponse) -> Table:
    table = Table(title=f"Playlist from {args.seeds[0]} (total score {response.total_score:.2f})")
    for column in ("#", "song", "in", "out", "score", "bpm", "camelot"):
        table.add_column(column, justify="left" if column == "song" else "right")
    for rank, step in enumerate(response.steps, 1):
        name = display_name(step.metadata, step.song_id)
        table.add_row(
            str(rank), name, _clock(step.entry_time_s), _clock(step.exit_time_s),
            f"{step.transition_score:.3f}" if rank > 1 else "-",
            f"{step.tempo_bpm:.1f}" if step.tempo_bpm else "-", step.key.camelot or "-",
        )  # fmt: skip
    return table


def run(args: argparse.Namespace) -> int:
    if args.export:
        return export_plan(args, lambda: _plan(args))
    return show_response(_plan(args), args.json, lambda r: _table(args, r))
