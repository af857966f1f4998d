"""A soak: mixed load on the three services as real processes for --minutes, watching memory.

    .venv/bin/python bench/bench_soak.py                     # 10 minutes, 3 of them warm-up
    .venv/bin/python bench/bench_soak.py --minutes 1 --warmup-minutes 0.3    # a smoke run

Starts the embedder, matcher and mixer with devkit.localstack (insecure development mode) and
drives segue.loadgen's load generator (Analyze streams of real songs in 1 s chunks,
NextSegment, RenderTransition) with, beside it, a loop of UpsertSong (each stored song
replaced by its own analysis, so the library keeps its size), GetSong and PlanPlaylist. Every
--sample-s seconds it samples each service's RSS (the process with its children). For each
service the report gives the RSS once warm-up is over and at the end (medians of the first and
last three samples after warm-up), the least-squares slope over the samples after warm-up
(MB/min), the growth in percent between the two, and the errors (every status but OK) by
code.

Acceptance: RSS growth <= 10% after warm-up for every service, and 0 errors.

Results: bench/results/soak_<date>.md and .json, and soak_<date>.png (RSS over time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # type: ignore[import-untyped, unused-ignore]  # noqa: E402

from bench import report as rep  # noqa: E402
from bench.process_memory import tree_rss_mb  # noqa: E402
from devkit.localstack import Stack, running_stack  # noqa: E402
from segue.audio import decode  # noqa: E402
from segue.loadgen import MODEL_RATE_HZ, LoadConfig, LoadGenerator, LoadReport  # noqa: E402
from segue.music import find_music  # noqa: E402
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc  # noqa: E402

SERVICES = ("embedder", "matcher", "mixer")
MAX_GROWTH_PCT = 10.0
# RSS "after warm-up" and "at the end" are medians of this many samples at each end.
EDGE_SAMPLES = 3


@dataclass
class Samples:
    """RSS of each service over time (seconds since the load started, MB)."""

    times_s: list[float] = field(default_factory=list)
    rss_mb: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SERVICES})
    exited: list[str] = field(default_factory=list)


async def sample_rss(stack: Stack, samples: Samples, every_s: float, started: float,
                     done: asyncio.Event) -> None:
    procs = {r.service: psutil.Process(r.pid) for rs in stack.replicas.values() for r in rs}
    while True:
        samples.times_s.append(time.perf_counter() - started)
        for name, proc in procs.items():
            rss = tree_rss_mb(proc)
            samples.rss_mb[name].append(rss)
            if rss == 0.0 and name not in samples.exited:
                samples.exited.append(name)
        try:
            await asyncio.wait_for(done.wait(), every_s)
            return
        except TimeoutError:
            continue


@dataclass
class Extra:
    """The matcher calls the load generator does not make: upserts, reads, playlists."""

    codes: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: {
        "upsert": [], "get": [], "plan": []})


async def matcher_loop(generator: LoadGenerator, address: str, extra: Extra, rate_per_s: float,
                       done: asyncio.Event, seed: int) -> None:
    """UpsertSong (a stored song replaced by its own analysis), GetSong and PlanPlaylist at
    `rate_per_s`, once the load generator has stored its songs, until `done`."""
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = matcher_pb2_grpc.MatcherStub(channel)
        while not generator.indexed and not done.is_set():
            await asyncio.sleep(0.5)
        stored: dict[str, common_pb2.SongAnalysis] = {}
        for song_id in list(generator.indexed):
            song = await stub.GetSong(matcher_pb2.GetSongRequest(song_id=song_id,
                                                                 with_vectors=True), timeout=30)
            stored[song_id] = song.analysis
        while not done.is_set() and stored:
            song_id = rng.choice(list(stored))
            kind = rng.choice(("upsert", "get", "plan"))
            await _timed(kind, _matcher_call(stub, kind, song_id, stored[song_id]), extra)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0 / rate_per_s)


def _matcher_call(stub: matcher_pb2_grpc.MatcherAsyncStub, kind: str, song_id: str,
                  analysis: common_pb2.SongAnalysis) -> Any:
    if kind == "upsert":
        return stub.UpsertSong(matcher_pb2.UpsertSongRequest(
            analysis=analysis, metadata=matcher_pb2.SongMetadata(title=song_id)), timeout=30)
    if kind == "get":
        return stub.GetSong(matcher_pb2.GetSongRequest(song_id=song_id), timeout=30)
    return stub.PlanPlaylist(matcher_pb2.PlanPlaylistRequest(
        seed_song_ids=[song_id], num_songs=4), timeout=30)


async def _timed(kind: str, call: Any, extra: Extra) -> None:
    started = time.perf_counter()
    try:
        await call
    except grpc.aio.AioRpcError as e:
        extra.codes[e.code().name] += 1
        extra.details[f"matcher {kind} {e.code().name}: {(e.details() or '')[:120]}"] += 1
        return
    extra.codes["OK"] += 1
    extra.latencies_s[kind].append(time.perf_counter() - started)


async def soak(stack: Stack, args: argparse.Namespace,
               songs: dict[str, Any]) -> tuple[LoadReport, Extra, Samples]:
    config = LoadConfig(embedder=stack.grpc["embedder"], matcher=stack.grpc["matcher"],
                        mixer=stack.grpc["mixer"], duration_s=60 * args.minutes,
                        rate_per_s=args.rate, concurrency=args.concurrency, seed=args.seed)
    generator = LoadGenerator(config, songs)
    samples, extra, done = Samples(), Extra(), asyncio.Event()
    started = time.perf_counter()
    sampler = asyncio.create_task(sample_rss(stack, samples, args.sample_s, started, done))
    matcher = asyncio.create_task(matcher_loop(generator, stack.grpc["matcher"], extra,
                                               args.matcher_rate, done, args.seed))
    try:
        load = await generator.run()
    finally:
        done.set()
        await asyncio.gather(sampler, matcher, return_exceptions=True)
    return load, extra, samples


# ---- the figures ----------------------------------------------------------------------------


def memory_figures(samples: Samples, warmup_s: float) -> dict[str, dict[str, float]]:
    """Per service: RSS after warm-up and at the end, the slope after warm-up, growth %."""
    times = np.asarray(samples.times_s)
    after = times >= warmup_s
    out = {}
    for name, values in samples.rss_mb.items():
        rss = np.asarray(values)
        if after.sum() < 2:
            out[name] = {"samples": int(after.sum()), "rss_after_warmup_mb": float("nan"),
                         "rss_end_mb": float(rss[-1]) if rss.size else float("nan"),
                         "slope_mb_per_min": float("nan"), "growth_pct": float("nan"),
                         "peak_mb": float(rss.max()) if rss.size else float("nan")}
            continue
        kept = rss[after]
        # Medians of the first and last few samples: one render's transient does not decide.
        start, end = float(np.median(kept[:EDGE_SAMPLES])), float(np.median(kept[-EDGE_SAMPLES:]))
        slope = float(np.polyfit(times[after] / 60.0, rss[after], 1)[0])
        out[name] = {"samples": int(after.sum()), "rss_after_warmup_mb": start,
                     "rss_end_mb": end, "slope_mb_per_min": slope,
                     "growth_pct": 100.0 * (end - start) / start if start else float("nan"),
                     "peak_mb": float(rss.max())}
    return out



def errors_by_service(load: LoadReport, extra: Extra) -> dict[str, dict[str, int]]:
    """Every status but OK, by service and code."""
    out: dict[str, Counter[str]] = {s: Counter() for s in SERVICES}
    for service, codes in load.codes.items():
        out[service].update({c: n for c, n in codes.items() if c != "OK"})
    out["matcher"].update({c: n for c, n in extra.codes.items() if c != "OK"})
    return {s: dict(c) for s, c in out.items()}


def verdict(memory: dict[str, dict[str, float]], errors: dict[str, dict[str, int]],
            exited: list[str]) -> tuple[bool, list[str]]:
    growth_ok = all(np.isfinite(m["growth_pct"]) and m["growth_pct"] <= MAX_GROWTH_PCT
                    for m in memory.values())
    no_errors = not any(errors.values()) and not exited
    lines = [f"- {'PASS' if growth_ok else 'FAIL'}: RSS growth <= {MAX_GROWTH_PCT:.0f}% after "
             "warm-up, every service",
             f"- {'PASS' if no_errors else 'FAIL'}: 0 errors (and no service exited)"]
    return growth_ok and no_errors, lines


def plot(samples: Samples, warmup_s: float, path: Path) -> bool:
    """RSS over time per service; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    minutes = np.asarray(samples.times_s) / 60.0
    for name, values in samples.rss_mb.items():
        ax.plot(minutes, values, label=name)
    ax.axvline(warmup_s / 60.0, color="grey", linestyle="--", label="end of warm-up")
    ax.set_xlabel("minutes since the load started")
    ax.set_ylabel("RSS, MB (process and children)")
    ax.set_title("Soak: RSS of each service")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def markdown(run: rep.RunInfo, args: argparse.Namespace, result: dict[str, Any]) -> str:
    memory, errors = result["memory"], result["errors"]
    passed, checks = verdict(memory, errors, result["exited"])
    rows = [[name, m["samples"], f"{m['rss_after_warmup_mb']:.0f}", f"{m['rss_end_mb']:.0f}",
             f"{m['peak_mb']:.0f}", f"{m['slope_mb_per_min']:+.2f}", f"{m['growth_pct']:+.1f}",
             ", ".join(f"{c} {n}" for c, n in sorted(errors[name].items())) or "0"]
            for name, m in memory.items()]
    counts = result["calls"]
    lines = [
        *rep.header(f"Soak, {args.minutes:g} minutes of mixed load", run, [
            "The load generator runs on the same cores as the three services."]),
        f"{args.songs} real songs. Load (segue.loadgen): {args.rate} operations/s, at most "
        f"{args.concurrency} at once: 30% Analyze streams of 10 s in 1 s chunks, 60% "
        "NextSegment, 10% RenderTransition; beside it UpsertSong (replacing a stored song "
        f"with its own analysis), GetSong and PlanPlaylist at {args.matcher_rate}/s. Calls "
        "answered: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ". RSS "
        f"sampled every {args.sample_s:g} s; warm-up: the first {args.warmup_minutes:g} "
        f"minutes (indexing included). RSS after warm-up and at the end: medians of the first "
        f"and last {EDGE_SAMPLES} samples after warm-up.",
        "",
        f"Acceptance: {'PASSED' if passed else 'FAILED'}",
        *checks,
        "",
        *rep.table(["service", "samples after warm-up", "RSS after warm-up, MB",
                    "RSS at the end, MB", "peak, MB", "slope, MB/min", "growth, %", "errors"],
                   rows, "lrrrrrrl"),
    ]
    if result["error_details"]:
        lines += ["", "Errors:", *(f"- {k} x{n}" for k, n in
                                  sorted(result["error_details"].items()))]
    if result["exited"]:
        lines += ["", "Services that exited: " + ", ".join(result["exited"])]
    if result["plot"]:
        lines += ["", f"![RSS over time]({result['plot']})"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-minutes", type=float, default=3.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=6.0, help="load generator operations/s")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--matcher-rate", type=float, default=2.0,
                        help="UpsertSong/GetSong/PlanPlaylist calls per second")
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--music", type=Path)
    parser.add_argument("--date", help="the results file's date (default today)")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    args = parser.parse_args()
    run = rep.capture_run(args.date)
    songs = {p.stem: decode(p, MODEL_RATE_HZ) for p in find_music(args.music)[: args.songs]}
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        load, extra, samples = asyncio.run(soak(stack, args, songs))
    warmup_s = 60 * args.warmup_minutes
    stem = rep.results_stem(args.out, "soak", run.date)
    png = stem.with_name(stem.name + ".png")
    calls = Counter({f"{s} {c}": n for s, codes in load.codes.items() for c, n in codes.items()})
    calls.update({f"matcher-extra {c}": n for c, n in extra.codes.items()})
    result: dict[str, Any] = {
        "memory": memory_figures(samples, warmup_s), "errors": errors_by_service(load, extra),
        "error_details": {**load.error_details, **extra.details}, "exited": samples.exited,
        "calls": dict(calls), "plot": png.name if plot(samples, warmup_s, png) else "",
    }
    text = markdown(run, args, result)
    print(text)
    passed = verdict(result["memory"], result["errors"], samples.exited)[0]
    rep.write_results(stem, text, {
        **run.as_dict(), "minutes": args.minutes, "warmup_minutes": args.warmup_minutes,
        "sample_s": args.sample_s, "rate_per_s": args.rate, "concurrency": args.concurrency,
        "matcher_rate_per_s": args.matcher_rate, "songs": args.songs, **result,
        "samples": {"times_s": samples.times_s, "rss_mb": samples.rss_mb},
        "load_percentiles_ms": {k: {q: load.percentile(k, q) * 1e3 for q in (50, 99)}
                                for k in load.latencies_s},
        "passed": passed,
    })
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
