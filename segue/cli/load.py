"""`segue load`: bounded load against the three services on loopback, with SLO verdicts."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from segue.audio import decode
from segue.cli.common import DEFAULT_EMBEDDER, DEFAULT_MATCHER, DEFAULT_MIXER, add_target
from segue.loadgen import MODEL_RATE_HZ, LoadConfig, LoadGenerator
from segue.music import find_music


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("load", help="drive bounded load against the services (loopback only)")
    add_target(p, "embedder", DEFAULT_EMBEDDER)
    add_target(p, "matcher", DEFAULT_MATCHER)
    add_target(p, "mixer", DEFAULT_MIXER)
    p.add_argument("--music", type=Path, help="folder of songs (default: bundled tracks)")
    p.add_argument("--songs", type=int, default=8, help="songs to use (default 8)")
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=8.0, help="operations started per second")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the report here (.md; a .json beside it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = find_music(args.music)[: args.songs]
    songs = {path.stem: decode(path, MODEL_RATE_HZ) for path in files}
    config = LoadConfig(
        embedder=args.embedder, matcher=args.matcher, mixer=args.mixer,
        duration_s=args.duration_s, rate_per_s=args.rate, concurrency=args.concurrency,
        seed=args.seed,
    )
    report = asyncio.run(LoadGenerator(config, songs).run())
    header = (
        f"# Load run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Machine: {platform.node()} ({platform.machine()}, {_cores()} cores), "
        f"{len(songs)} songs, rate {args.rate}/s, concurrency {args.concurrency}.\n\n"
    )
    text = header + report.markdown()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({
            "duration_s": report.duration_s,
            "percentiles_ms": {
                kind: {q: report.percentile(kind, q) * 1e3 for q in (50, 90, 99)}
                for kind in report.latencies_s
            },
            "codes": {s: dict(c) for s, c in report.codes.items()},
            "slo": report.slo_verdicts(),
        }, indent=2))
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 0
