"""The main job, end to end: `make demo` (or `make demo MUSIC=~/Music`).

1. Starts the embedder, matcher and mixer as real services on loopback.
2. Streams every song to the embedder and prints what it learned (tempo, key, sections).
3. Stores the analyses in the matcher and asks it for similar songs, the best next segment
   and a playlist.
4. Has the mixer render the playlist as one continuous DJ mix (RenderMix), with its cue sheet
   and plot; the mixer takes each song's beats and key from the analysis the matcher stores.

Everything is written under out/demo/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from google.protobuf.json_format import MessageToJson
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devkit.localstack import Stack, running_stack  # noqa: E402
from segue.cli import main as segue_cli  # noqa: E402
from segue.client.embedder import EmbedderClient  # noqa: E402
from segue.client.errors import SegueError  # noqa: E402
from segue.client.matcher import MatcherClient, make_metadata  # noqa: E402
from segue.client.security import ClientSecurity  # noqa: E402
from segue.music import find_music  # noqa: E402
from segue.v1 import common_pb2  # noqa: E402

console = Console(stderr=True)
SERVICES = ("embedder", "matcher", "mixer")


async def analyse_and_index(files: list[Path], addresses: dict[str, str],
                            out: Path) -> dict[str, common_pb2.SongAnalysis]:
    analyses: dict[str, common_pb2.SongAnalysis] = {}
    (out / "analyses").mkdir(parents=True, exist_ok=True)
    async with EmbedderClient(addresses["embedder"]) as embedder, \
            MatcherClient(addresses["matcher"]) as matcher:
        info = await embedder.model_info()
        console.print(f"model {info.name} {info.version} on {info.execution_provider}")
        started = time.perf_counter()
        audio_s = 0.0
        for path in files:
            song_id = path.stem
            result = await embedder.analyze_file(path, song_id=song_id)
            analysis = result.analysis
            analyses[song_id] = analysis
            audio_s += analysis.duration_s
            (out / "analyses" / f"{song_id}.json").write_text(MessageToJson(analysis))
            metadata = make_metadata(title=song_id, album=path.parent.name, uri=str(path))
            await matcher.upsert_song(analysis, metadata)
        elapsed = time.perf_counter() - started
        console.print(f"analysed and indexed {len(files)} songs ({audio_s:.0f} s of audio) "
                      f"in {elapsed:.1f} s, decoding included")

        table = Table(title="What Segue heard")
        for column in ("song", "length", "tempo", "key", "sections", "segments", "LUFS"):
            table.add_column(column)
        for song_id, a in analyses.items():
            table.add_row(song_id, f"{a.duration_s:.0f} s", f"{a.tempo.bpm:.1f}",
                          f"{a.key.name} ({a.key.camelot})",
                          " ".join(s.letter for s in a.sections), str(len(a.segments)),
                          f"{a.loudness_lufs:.1f}")
        console.print(table)

        seed = next(iter(analyses))
        similar = await matcher.similar_songs(seed, k=5)
        table = Table(title=f"Songs that feel like {seed}")
        table.add_column("song")
        table.add_column("similarity")
        for song in similar.songs:
            table.add_row(song.song_id, f"{song.similarity:.3f}")
        console.print(table)

        nxt = await matcher.next_segment(seed, k=5)
        table = Table(title=f"Best next segments after {seed} ends")
        for column in ("song", "enter at", "score", "transition", "feel", "tempo", "key"):
            table.add_column(column)
        for c in nxt.candidates:
            b = c.breakdown
            table.add_row(c.song_id, f"{c.entry_time_s:.1f} s", f"{c.score:.3f}",
                          f"{b.transition:.2f}", f"{b.feel:.2f}", f"{b.tempo:.2f}",
                          f"{b.key:.2f}")
        console.print(table)
    return analyses


def use_token(stack: Stack, out: Path) -> None:
    """Hands the stack's generated token to every client here (the SDK and the CLI read
    SEGUE_TOKEN_FILE), after showing that a call without it is refused."""
    assert stack.token is not None
    path = out / "client-token"
    path.write_text(stack.token + "\n")
    path.chmod(0o600)
    refused = asyncio.run(anonymous_delete(stack.grpc["matcher"]))
    os.environ["SEGUE_TOKEN_FILE"] = str(path)
    os.environ.pop("SEGUE_TOKEN", None)
    console.print(f"[green]✓[/] the services require a bearer token (this run's is in {path}); "
                  f"an anonymous DeleteSong gets {refused}")


async def anonymous_delete(matcher: str) -> str:
    """The status an unauthenticated DeleteSong gets."""
    try:
        async with MatcherClient(matcher, security=ClientSecurity()) as anonymous:
            await anonymous.delete_song("any-song")
    except SegueError as e:
        return e.code().name
    return "OK: authentication is off!"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--music", type=Path, help="folder of songs (default: bundled tracks)")
    parser.add_argument("--songs", type=int, default=0, help="use at most this many (0: all)")
    parser.add_argument("--mix-songs", type=int, default=5, help="songs in the rendered mix")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    args = parser.parse_args()

    files = find_music(args.music)
    if args.songs:
        files = files[: args.songs]
    args.out.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]Segue demo[/] on {len(files)} songs from "
                  f"{args.music or 'the bundled immich-memories-music tracks'}")
    with running_stack(args.out, auth=True) as stack:
        addresses = stack.grpc
        for name, address in addresses.items():
            console.print(f"[green]✓[/] {name} serving on {address}")
        use_token(stack, args.out)
        analyses = asyncio.run(analyse_and_index(files, addresses, args.out))
        seed = next(iter(analyses))
        mix = args.out / "mix.mp3"
        code = segue_cli([
            "mix", "--playlist", seed, "-n", str(min(args.mix_songs, len(analyses))),
            "-o", str(mix), "--plot", str(args.out / "mix.png"),
            "--matcher", addresses["matcher"], "--mixer", addresses["mixer"],
        ])
        if code != 0:
            return code
    console.print("\n[bold]Done.[/] Everything is under", args.out)
    for name in ("mix.mp3", "mix.cue", "mix.json", "mix.png"):
        if (args.out / name).exists():
            console.print(f"  {args.out / name}")
    console.print(f"  {args.out / 'analyses'}/ (one JSON analysis per song)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
