"""`segue studio`: serve Segue Studio, make invite links, and export the answers.

    segue studio serve                      # the web app on 127.0.0.1:8700
    segue studio warm                       # cuts the library's clips before invites go out
    segue studio invite --label friends     # prints an invite link (the token is shown once)
    segue studio export mecomp -o triplets.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segue.cli.common import DEFAULT_MATCHER, add_target, describe_error, fail

if TYPE_CHECKING:
    from segue.studio.prefetch import WarmProgress


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "studio", help="the web app that gathers human judgements (serve, invite, export)",
        description="Segue Studio: odd-one-out triplets of blind clips from the matcher's "
        "library, with quality control, invites and exports. Settings come from SEGUE_STUDIO_* "
        "variables (see segue/studio/config.py); the options below override them.")
    sub = parser.add_subparsers(dest="studio_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the web app")
    add_target(serve, "matcher", DEFAULT_MATCHER)
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8700)")
    serve.set_defaults(func=_serve)
    warm = sub.add_parser(
        "warm", help="cut the library's clip grid into the clip cache now",
        description="Cuts the clips `serve` would cut ahead at start-up (up to "
        "SEGUE_STUDIO_WARM_CLIPS) into the Studio's clip cache and waits until they are all "
        "done, so that no annotator's page waits for ffmpeg. Exit status 1 when any clip "
        "failed.")
    add_target(warm, "matcher", DEFAULT_MATCHER)
    warm.add_argument("--report-every", type=float, default=10.0, metavar="S",
                      help="seconds between progress lines on stderr (default 10)")
    warm.set_defaults(func=_warm)
    invite = sub.add_parser("invite", help="create an invite link")
    invite.add_argument("--label", required=True, help="who the link is for (shown to admins)")
    invite.add_argument("--uses", type=int, default=10, help="annotators it admits (default 10)")
    invite.add_argument("--days", type=float, default=14.0, help="days it stays valid")
    invite.add_argument("--base-url", default="http://127.0.0.1:8700",
                        help="the Studio's address as annotators reach it")
    invite.set_defaults(func=_invite)
    export = sub.add_parser("export", help="write the answers in one of the export formats")
    export.add_argument("format", choices=["mecomp", "bliss", "json"])
    export.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    export.add_argument("--include-flagged", action="store_true",
                        help="keep answers of annotators that failed quality control")
    export.set_defaults(func=_export)


def _config(args: argparse.Namespace) -> Any:
    from segue.studio.config import StudioConfig

    config = StudioConfig.from_env()
    overrides = {name: getattr(args, name, None) for name in ("host", "port")}
    overrides["matcher_address"] = getattr(args, "matcher", None)
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _serve(args: argparse.Namespace) -> int:
    from segue.client.errors import SegueError
    from segue.studio.serve import serve

    try:
        return serve(_config(args))
    except (ValueError, OSError, SegueError) as e:
        return _start_failed(e)


def _warm(args: argparse.Namespace) -> int:
    from segue.client.errors import SegueError
    from segue.studio.serve import build

    if not args.report_every > 0:
        return fail("--report-every must be more than 0 seconds")
    try:
        studio = build(_config(args))
    except (ValueError, OSError, SegueError) as e:
        return _start_failed(e)
    start = time.monotonic()
    try:
        studio.flow.warm_library()
        progress = _wait_for_warm_up(studio.flow.prefetcher.progress, args.report_every)
    finally:
        studio.flow.prefetcher.close()
        studio.store.close()
    print(f"{progress.done - progress.failed} of {progress.total} clips in the cache, "
          f"{progress.failed} failed, in {time.monotonic() - start:.0f} s")
    return 1 if progress.failed else 0


def _start_failed(error: Exception) -> int:
    """One line for a Studio that could not start: bad settings, files, or a matcher that
    cannot list the library (a SegueError, described with its service and address)."""
    from segue.client.errors import SegueError

    return fail(describe_error(error) if isinstance(error, SegueError) else str(error))


def _wait_for_warm_up(progress: Callable[[], WarmProgress], report_every_s: float
                      ) -> WarmProgress:
    """The warm-up's last progress once finished, a line on stderr every `report_every_s`."""
    last_report = time.monotonic()
    while not (now := progress()).finished:
        time.sleep(0.1)
        if time.monotonic() - last_report >= report_every_s:
            print(f"{now.done} of {now.total} clips", file=sys.stderr)
            last_report = time.monotonic()
    return now


def _invite(args: argparse.Namespace) -> int:
    from segue.studio.access import digest, new_token
    from segue.studio.sql_store import SqlStore

    if not 1 <= args.uses <= 10_000 or not 0 < args.days <= 365:
        return fail("--uses must be 1 to 10000 and --days more than 0 and at most 365")
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore.open(config.database_url)
    token, now = new_token(), datetime.now(UTC)
    try:
        store.create_invite(args.label[:100], digest(token), now + timedelta(days=args.days),
                            args.uses, now)
    finally:
        store.close()
    print(f"{args.base_url.rstrip('/')}/join/{token}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from segue.studio.exporting import export_text
    from segue.studio.sql_store import SqlStore

    store = SqlStore.open(_config(args).database_url)
    try:
        text = export_text(store, args.format, include_flagged=args.include_flagged)
    finally:
        store.close()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
