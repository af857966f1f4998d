"""`segue index DIR`: analyse a music folder and store every song in the matcher.

Song ids are file paths relative to DIR, so re-indexing updates songs in place. A manifest
(JSON, path -> size, mtime, sha256, song id) skips files that did not change since they were
last stored; a changed file is re-analysed and replaces its song. The manifest lives in the
user's cache directory, one per (folder, matcher) pair, so the music folder is never written.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from segue.audio import DecodeError, decode
from segue.cli.common import DEFAULT_EMBEDDER, DEFAULT_MATCHER, add_target, describe_error, fail
from segue.client.errors import NotFoundError, SegueError, UnavailableError
from segue.client.matcher import MatcherClient
from segue.v1 import common_pb2, matcher_pb2

AUDIO_SUFFIXES = frozenset(
    {".mp3", ".flac", ".wav", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma"}
)
Analyzer = Callable[[str, Any], common_pb2.SongAnalysis]


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str
    song_id: str

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256,
                "song_id": self.song_id}  # fmt: skip


def default_manifest(folder: Path, matcher: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = hashlib.sha256(f"{folder.resolve()}\x00{matcher}".encode()).hexdigest()[:16]
    return cache / "segue" / "index" / f"{key}.json"


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable: re-index everything rather than fail
    return data if isinstance(data, dict) else {}


def save_manifest(path: Path, manifest: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(path)  # atomic: a crash never leaves half a manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audio_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )


def metadata_of(folder: Path, path: Path) -> matcher_pb2.SongMetadata:
    relative = path.relative_to(folder)
    extra = {"folder": relative.parent.as_posix()} if relative.parent != Path(".") else {}
    return matcher_pb2.SongMetadata(title=path.stem, uri=str(path.resolve()), extra=extra)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "index",
        help="analyse a music folder and store it in the matcher",
        description="Analyses every audio file under DIR (via the embedder service, or "
        "in-process with --local) and upserts it into the matcher. Unchanged files are "
        "skipped on later runs.",
    )
    parser.add_argument("folder", type=Path, metavar="DIR")
    add_target(parser, "matcher", DEFAULT_MATCHER)
    add_target(parser, "embedder", DEFAULT_EMBEDDER)
    parser.add_argument(
        "--local",
        action="store_true",
        help="analyse in this process with the ONNX model; no embedder needed",
    )
    parser.add_argument("--model", type=Path, default=None, help="ONNX model for --local")
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="where to keep the file manifest (default: the user cache)",
    )
    parser.add_argument("--force", action="store_true", help="re-analyse unchanged files too")
    parser.set_defaults(func=run)


def _analyzer(args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> Analyzer:
    from segue.cli.analyze import _local_analyzer, _remote_analyzer

    if args.local:
        return _local_analyzer(args.model)
    return _remote_analyzer(args.embedder, 1.0, loop)


def run(args: argparse.Namespace) -> int:
    from segue.cli.analyze import DECODE_RATE_HZ

    folder: Path = args.folder
    if not folder.is_dir():
        return fail(f"{folder} is not a directory")
    manifest_path = args.manifest or default_manifest(folder, args.matcher)
    manifest = load_manifest(manifest_path)
    files = audio_files(folder)
    loop = asyncio.new_event_loop()
    matcher = loop.run_until_complete(_client(args.matcher))
    analyze = _analyzer(args, loop)
    stored = skipped = failed = 0
    try:
        for path in tqdm(files, unit="song", desc="indexing"):
            key = path.relative_to(folder).as_posix()
            stat = path.stat()
            previous = manifest.get(key)
            song_id = key
            if (
                not args.force
                and previous is not None
                and previous.get("size") == stat.st_size
                and (
                    previous.get("mtime_ns") == stat.st_mtime_ns
                    or previous.get("sha256") == sha256_of(path)
                )
                and loop.run_until_complete(_exists(matcher, song_id))
            ):
                previous["mtime_ns"] = stat.st_mtime_ns
                skipped += 1
                continue
            try:
                audio = decode(path, DECODE_RATE_HZ)
                analysis = analyze(song_id, audio)
                loop.run_until_complete(matcher.upsert_song(analysis, metadata_of(folder, path)))
            except (DecodeError, ValueError) as e:
                tqdm.write(f"segue: skipped {key}: {e}")
                failed += 1
                continue
            except SegueError as e:
                tqdm.write(f"segue: {key}: {describe_error(e)}")
                failed += 1
                if isinstance(e, UnavailableError):
                    break  # a service or the matcher's store is down: stop, not fail each file
                continue
            manifest[key] = FileState(
                stat.st_size, stat.st_mtime_ns, sha256_of(path), song_id
            ).as_json()
            stored += 1
            if stored % 20 == 0:
                save_manifest(manifest_path, manifest)
    except SegueError as e:  # the matcher failed while telling what it stores
        tqdm.write(f"segue: {describe_error(e)}")
        failed += 1
    finally:
        save_manifest(manifest_path, manifest)
        loop.run_until_complete(matcher.close())
        loop.close()
    print(f"stored {stored}, unchanged {skipped}, failed {failed} (manifest {manifest_path})")
    return 1 if failed else 0


async def _client(address: str) -> MatcherClient:
    return MatcherClient(address)


async def _exists(matcher: MatcherClient, song_id: str) -> bool:
    try:
        await matcher.get_song(song_id)
    except NotFoundError:
        return False
    return True
