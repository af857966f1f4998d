"""`segue index DIR`: analyse a music folder and store every song in the matcher.

Song ids are file paths relative to DIR, so re-indexing updates songs in place. The library
engine analyses the files (worker processes with --local, else the embedder replicas); each
song is upserted as soon as its file finishes and then recorded in a ledger (JSON lines,
path -> size, mtime, sha256, song id), so an interrupted run resumes where it stopped and a
re-run skips files that did not change. The ledger lives in the user's cache directory, one
per (folder, matcher) pair, so the music folder is never written.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from segue.cli.analyze import (
    add_library_options,
    finish_summary,
    library_options_problem,
    library_outcomes,
)
from segue.cli.common import DEFAULT_EMBEDDER, DEFAULT_MATCHER, add_target, describe_error, fail
from segue.client.errors import NotFoundError, SegueError, UnavailableError
from segue.client.matcher import MatcherClient
from segue.library import Done, Failed, Ledger, Source, Summary
from segue.library import outcome as why
from segue.library.progress import Progress
from segue.library.sources import folder_sources
from segue.v1 import matcher_pb2


def default_manifest(folder: Path, matcher: str) -> Path:
    """The ledger's default place: the user cache, keyed by folder and matcher address."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    key = hashlib.sha256(f"{folder.resolve()}\x00{matcher}".encode()).hexdigest()[:16]
    return cache / "segue" / "index" / f"{key}.json"


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
        "skipped on later runs, and an interrupted run resumes. The exit status is the "
        "number of failed files.",
    )
    parser.add_argument("folder", type=Path, metavar="DIR")
    add_target(parser, "matcher", DEFAULT_MATCHER)
    add_target(parser, "embedder", DEFAULT_EMBEDDER)
    parser.add_argument(
        "--local",
        action="store_true",
        help="analyse in this machine's processes with the ONNX model; no embedder needed",
    )
    parser.add_argument("--model", type=Path, default=None, help="ONNX model for --local")
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="where to keep the ledger of indexed files (default: the user cache)",
    )
    add_library_options(parser)
    parser.set_defaults(func=run)


class _Store:
    """The matcher, driven from this thread through its own event loop."""

    def __init__(self, address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = self.loop.run_until_complete(_client(address))

    def exists(self, song_id: str) -> bool:
        return self.loop.run_until_complete(_exists(self.client, song_id))

    def upsert(self, done: Done, folder: Path) -> None:
        self.loop.run_until_complete(
            self.client.upsert_song(done.analysis, metadata_of(folder, done.source.path))
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def _pending(
    sources: list[Source], ledger: Ledger, store: _Store, force: bool, summary: Summary
) -> list[Source]:
    """Files to analyse: all with --force, else those not stored unchanged already."""
    if force:
        return sources
    todo = []
    for source in sources:
        if not ledger.unchanged(source.key, source.path, source.song_id):
            todo.append(source)
            continue
        try:
            stored = store.exists(source.song_id)
        except SegueError as e:
            summary.add(Failed(source, why.STORE, describe_error(e), service_down=True))
            raise _ServiceDownError from e
        if stored:
            summary.unchanged += 1
        else:
            todo.append(source)
    return todo


class _ServiceDownError(Exception):
    """A service is unreachable: the run stops (its summary says why)."""


def run(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        return fail(f"{folder} is not a directory")
    if problem := library_options_problem(args):
        return fail(problem)
    ledger_path = args.manifest or default_manifest(folder, args.matcher)
    summary = Summary()
    store = _Store(args.matcher)
    try:
        with Ledger(ledger_path) as ledger:
            todo = _pending(folder_sources(folder, id_by_path=True), ledger, store,
                            args.force, summary)  # fmt: skip
            _index(args, folder, todo, ledger, store, summary)
    except _ServiceDownError:
        pass  # reported in the summary below
    except Exception as e:  # model or channel set-up: tell the person, no traceback
        return fail(str(e))
    finally:
        store.close()
    print(f"stored {summary.analysed}, unchanged {summary.unchanged}, failed "
          f"{len(summary.failures)} (manifest {ledger_path})")  # fmt: skip
    return finish_summary(summary, args.summary)


def _index(
    args: argparse.Namespace,
    folder: Path,
    todo: list[Source],
    ledger: Ledger,
    store: _Store,
    summary: Summary,
) -> None:
    """Analyses, stores and records each file as it finishes; stops if the matcher is down."""
    with Progress(len(todo), desc="indexing") as progress:
        outcomes = library_outcomes(args, todo)
        for outcome in outcomes:
            recorded = _record(outcome, folder, ledger, store)
            summary.add(recorded)
            progress.advance(recorded.audio_s if isinstance(recorded, Done) else 0.0)
            if isinstance(recorded, Failed) and recorded.service_down:
                close = getattr(outcomes, "close", None)
                if close is not None:
                    close()
                break  # a service is down: stop, rather than fail every later file


def _record(outcome: Done | Failed, folder: Path, ledger: Ledger, store: _Store) -> Done | Failed:
    """Stores a finished file in the matcher, then in the ledger (in that order, so the
    ledger never names a song the store lacks); returns the failure if storing failed."""
    if isinstance(outcome, Failed):
        return outcome
    try:
        store.upsert(outcome, folder)
    except SegueError as e:
        return Failed(
            outcome.source,
            why.STORE,
            describe_error(e),
            service_down=isinstance(e, UnavailableError),
        )
    ledger.finished(
        outcome.source.key,
        outcome.source.path,
        outcome.source.song_id,
        outcome.size,
        outcome.mtime_ns,
    )
    return outcome


async def _client(address: str) -> MatcherClient:
    return MatcherClient(address)


async def _exists(matcher: MatcherClient, song_id: str) -> bool:
    try:
        await matcher.get_song(song_id)
    except NotFoundError:
        return False
    return True
