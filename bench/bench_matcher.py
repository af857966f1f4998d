"""Matcher benchmark: indexing speed, NextSegment latency, and continuation quality.

    .venv/bin/python bench/bench_matcher.py            # full run: 5,000 songs, 100k segments
    .venv/bin/python bench/bench_matcher.py --songs 500 --skip-quality   # quick
    .venv/bin/python bench/bench_matcher.py --baseline old.json   # quote an earlier run

Speed runs on synthetic vectors with some structure (20 feel clusters; each segment's entry
near the previous segment's exit; tempos and keys drawn like a DJ library), the same workload
on the embedded store (qdrant-edge) and on the peer, qdrant-client's local mode, `--repeats`
times (medians reported). The full run takes about 5 minutes on 2 CPUs, most of it indexing
and the peer's slow filtered queries.
Quality runs the real model: songs are cut into pieces, every piece is analysed on its own
and indexed as a song, and the piece after each cut must rank in the top 10 of NextSegment
from the piece before it. Results go to bench/results/matcher_<date>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from qdrant_client import QdrantClient  # noqa: E402

from segue.config import ServerConfig  # noqa: E402
from segue.server import start_server  # noqa: E402
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc  # noqa: E402
from services.matcher.client_store import ClientStore  # noqa: E402
from services.matcher.config import MatcherConfig  # noqa: E402
from services.matcher.edge_store import EdgeStore  # noqa: E402
from services.matcher.library import SongLibrary  # noqa: E402
from services.matcher.next_segment import (  # noqa: E402
    NextSegmentFinder,
    resolve_source,
    user_filter_for,
)
from services.matcher.scoring import Weights  # noqa: E402
from services.matcher.servicer import MatcherServicer, register  # noqa: E402
from services.matcher.store import SegmentStore, VectorDims  # noqa: E402

DIMS = VectorDims(feel=32, transition=64)
SEGMENTS_PER_SONG = 20
CAMELOT = [f"{n}{m}" for n in range(1, 13) for m in "AB"]
# Query i has kind i % 3 (see next_segment_requests).
QUERY_KINDS = ("unfiltered", "artist_and_played_exclusions", "tempo_compatible")


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def synthetic_library(songs: int, seed: int = 0) -> list[common_pb2.SongAnalysis]:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(20, DIMS.feel)))
    transition_centres = _unit(rng.normal(size=(20, DIMS.transition)))
    out = []
    for i in range(songs):
        cluster = int(rng.integers(20))
        feel = _unit(centres[cluster] + 0.35 * rng.normal(size=DIMS.feel))
        entry = _unit(transition_centres[cluster] + 0.6 * rng.normal(size=DIMS.transition))
        analysis = common_pb2.SongAnalysis(
            song_id=f"song-{i:05d}",
            model_name="synthetic",
            model_version="bench",
            duration_s=SEGMENTS_PER_SONG * 8.0,
            feel=feel.tolist(),
            tempo=common_pb2.Tempo(bpm=float(rng.normal(122, 14)), stability=1, confidence=1),
            key=common_pb2.Key(camelot=str(rng.choice(CAMELOT)), confidence=1),
        )
        for j in range(SEGMENTS_PER_SONG):
            exit_ = _unit(transition_centres[cluster] + 0.6 * rng.normal(size=DIMS.transition))
            analysis.segments.append(
                common_pb2.Segment(
                    index=j, start_s=j * 8.0, end_s=(j + 1) * 8.0,
                    entry=entry.tolist(), exit=exit_.tolist(),
                    energy=float(rng.uniform(0.1, 1.0)), section_letter="ABAC"[j % 4],
                )
            )  # fmt: skip
            entry = _unit(exit_ + 0.2 * rng.normal(size=DIMS.transition))
        out.append(analysis)
    return out


def metadata(i: int) -> matcher_pb2.SongMetadata:
    return matcher_pb2.SongMetadata(
        title=f"Song {i}", artist=f"artist-{i % 700}", genre=("house", "techno", "pop")[i % 3]
    )


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e3, q))


def index_library(library: SongLibrary, songs: list[common_pb2.SongAnalysis]) -> dict[str, Any]:
    library.ensure_ready()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, song in enumerate(songs):
        library.upsert(song, metadata(i))
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    segments = len(songs) * SEGMENTS_PER_SONG
    return {
        "segments": segments,
        "seconds": seconds,
        "segments_per_s": segments / seconds,
        "cpu_seconds": cpu_seconds,
        "segments_per_cpu_s": segments / cpu_seconds,
    }


def next_segment_requests(
    songs: int, count: int, seed: int
) -> list[matcher_pb2.NextSegmentRequest]:
    rng = np.random.default_rng(seed)
    out = []
    for q in range(count):
        song_id = f"song-{int(rng.integers(songs)):05d}"
        position = matcher_pb2.SongPosition(song_id=song_id, time_s=float(rng.uniform(0, 160)))
        spec = matcher_pb2.Filter()
        if q % 3 == 1:
            spec.exclude_artists.append(f"artist-{int(rng.integers(700))}")
            spec.played_song_ids.extend(f"song-{int(rng.integers(songs)):05d}" for _ in range(20))
        elif q % 3 == 2:
            spec.tempo_compatible = True
        out.append(matcher_pb2.NextSegmentRequest(position=position, k=10, filter=spec))
    return out


def _find(
    finder: NextSegmentFinder, library: SongLibrary, request: matcher_pb2.NextSegmentRequest
) -> list[str]:
    source = resolve_source(library, request)
    found = finder.find(
        source, k=10, weights=Weights(), user_filter=user_filter_for(request.filter, source)
    )
    return [c.song_id for c in found]


def service_path_latency(
    library: SongLibrary, requests: list[matcher_pb2.NextSegmentRequest]
) -> dict[str, Any]:
    """NextSegment through the store + scoring path (no gRPC); also returns what it found."""
    finder = NextSegmentFinder(library)
    for request in requests[:20]:  # warm caches
        _find(finder, library, request)
    samples, cpu, found = [], [], []
    for request in requests:
        started, cpu_started = time.perf_counter(), time.process_time()
        found.append(_find(finder, library, request))
        samples.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    by_kind = {
        kind: {
            "p50_ms": percentile_ms(samples[i::3], 50),
            "p99_ms": percentile_ms(samples[i::3], 99),
        }
        for i, kind in enumerate(QUERY_KINDS)
    }
    return {
        "queries": len(samples),
        "p50_ms": percentile_ms(samples, 50),
        "p99_ms": percentile_ms(samples, 99),
        "mean_ms": statistics.fmean(samples) * 1e3,
        "cpu_p50_ms": percentile_ms(cpu, 50),
        "cpu_p99_ms": percentile_ms(cpu, 99),
        "by_kind": by_kind,
        "found": found,
    }


def grpc_latency(
    library: SongLibrary, requests: list[matcher_pb2.NextSegmentRequest], runs: int
) -> list[dict[str, Any]]:
    """NextSegment through a real gRPC server on loopback, `runs` passes over the requests."""

    async def main() -> list[list[float]]:
        config = ServerConfig(insecure_dev=True, service="matcher", host="127.0.0.1", grpc_port=0)
        server = await start_server(
            config, register(MatcherServicer(library)), serve_metrics_port=False
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = matcher_pb2_grpc.MatcherStub(channel)
        for request in requests[:20]:
            await stub.NextSegment(request)
        passes = []
        for _ in range(runs):
            samples = []
            for request in requests:
                started = time.perf_counter()
                await stub.NextSegment(request)
                samples.append(time.perf_counter() - started)
            passes.append(samples)
        await channel.close(None)
        await server.stop(0)
        return passes

    return [
        {
            "queries": len(samples),
            "p50_ms": percentile_ms(samples, 50),
            "p99_ms": percentile_ms(samples, 99),
        }
        for samples in asyncio.run(main())
    ]


def agreement_with_exact(
    path: Path, requests: list[matcher_pb2.NextSegmentRequest], graph_found: list[list[str]]
) -> dict[str, Any]:
    """How many of the top 10 songs the graph search returns are the top 10 of an exact search
    (every vector scored) over the same store, per query kind."""
    store = EdgeStore(path, DIMS, exact_search=True)
    library = SongLibrary(store)
    library.preload()
    finder = NextSegmentFinder(library)
    overlap, first = [], []
    for request, graph in zip(requests, graph_found, strict=True):
        exact = _find(finder, library, request)
        overlap.append(len(set(graph) & set(exact)) / max(len(exact), 1))
        first.append(graph[:1] == exact[:1])
    store.close()
    return {
        "queries": len(requests),
        "top10_overlap": statistics.fmean(overlap),
        "top1_same": statistics.fmean(first),
        "top10_overlap_by_kind": {
            kind: statistics.fmean(overlap[i::3]) for i, kind in enumerate(QUERY_KINDS)
        },
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def run_speed(
    songs: int, queries: int, peer_queries: int, repeats: int, workdir: Path
) -> dict[str, Any]:
    """Indexing alternates edge and peer `repeats` times (each into a new store) so both meet
    the same machine conditions; latency passes run `repeats` times over the last edge store.
    Medians of the runs are reported, with every run kept in the JSON."""
    library_songs = synthetic_library(songs)
    requests = next_segment_requests(songs, queries, seed=1)
    hnsw_ef = MatcherConfig().hnsw_ef
    results: dict[str, Any] = {"hnsw_ef": hnsw_ef, "repeats": repeats, "load_average": {}}
    edge_runs, peer_runs = [], []
    edge_path = workdir / "edge"
    for run in range(repeats):
        shutil.rmtree(edge_path, ignore_errors=True)
        edge = EdgeStore(edge_path, DIMS, hnsw_ef=hnsw_ef)
        print(f"[{run + 1}/{repeats}] indexing {songs} songs into qdrant-edge ...", flush=True)
        edge_runs.append(index_library(SongLibrary(edge), library_songs))
        if run == repeats - 1:
            started = time.perf_counter()
            edge.optimize()
            results["edge_optimize_seconds"] = time.perf_counter() - started
        edge.close()
        peer: SegmentStore = ClientStore(QdrantClient(location=":memory:"), "bench", DIMS)
        print(f"[{run + 1}/{repeats}] indexing into qdrant-client local mode ...", flush=True)
        peer_runs.append(index_library(SongLibrary(peer), library_songs))
        if run < repeats - 1:
            peer.close()
    results["load_average"]["after_indexing"] = os.getloadavg()
    results["edge_index_runs"], results["peer_index_runs"] = edge_runs, peer_runs

    edge = EdgeStore(edge_path, DIMS, hnsw_ef=hnsw_ef)
    edge_library = SongLibrary(edge)
    edge_library.preload()  # as the service does at start-up
    print("edge latency ...", flush=True)
    latency_runs = [service_path_latency(edge_library, requests) for _ in range(repeats)]
    results["edge_next_segment_runs"] = [
        {k: v for k, v in r.items() if k != "found"} for r in latency_runs
    ]
    results["edge_next_segment_grpc_runs"] = grpc_latency(edge_library, requests, repeats)
    edge.close()
    results["load_average"]["after_edge_latency"] = os.getloadavg()
    print("edge agreement with exact search ...", flush=True)
    sample = min(len(requests), 300)
    results["edge_agreement_with_exact"] = agreement_with_exact(
        edge_path, requests[:sample], latency_runs[-1]["found"][:sample]
    )

    peer_library = SongLibrary(peer)
    # Feels only: local mode re-filters the whole collection for every scroll page, so loading
    # 100k segment facts takes minutes there; the peer reads them on demand instead.
    peer_library.preload_feels()
    print(f"peer latency ({peer_queries} queries) ...", flush=True)
    peer_latency = service_path_latency(peer_library, requests[:peer_queries])
    results["peer_next_segment"] = {k: v for k, v in peer_latency.items() if k != "found"}
    peer.close()
    results["load_average"]["end"] = os.getloadavg()
    return results


def run_quality(workdir: Path) -> dict[str, Any] | None:
    """Top-10 continuation rate on real music cut into pieces (needs the real model)."""
    model = REPO / "models" / "segue_stream.onnx"
    try:
        from segue.audio import decode
        from segue.cli.analyze import _local_analyzer
        from segue.library.decoding import DECODE_RATE_HZ
    except ModuleNotFoundError as e:
        print(f"quality skipped: {e}")
        return None
    if not model.exists():
        print("quality skipped: models/segue_stream.onnx is absent")
        return None
    from immich_memories_music import tracks_dir

    files = sorted(Path(tracks_dir()).rglob("*.opus"))
    shared = REPO.parent / "shared" / "music" / "librosa"
    files += sorted(shared.glob("*.ogg")) if shared.is_dir() else []
    analyze = _local_analyzer(model)
    store = EdgeStore(workdir / "quality", DIMS)
    library = SongLibrary(store)
    piece_s = 15.0
    cuts: list[tuple[str, str]] = []
    model_version = ""
    print(f"quality: analysing {len(files)} recordings in {piece_s:.0f} s pieces ...", flush=True)
    for path in files:
        audio = decode(path, DECODE_RATE_HZ)
        step = int(piece_s * DECODE_RATE_HZ)
        pieces = [audio[i : i + step] for i in range(0, len(audio), step)]
        pieces = [p for p in pieces if len(p) >= step // 2]
        ids = [f"{path.stem}#{n}" for n in range(len(pieces))]
        for song_id, pcm in zip(ids, pieces, strict=True):
            analysis = analyze(song_id, pcm)
            model_version = f"{analysis.model_name} {analysis.model_version}"
            library.upsert(analysis, matcher_pb2.SongMetadata(title=song_id))
        cuts.extend(itertools.pairwise(ids))
    finder = NextSegmentFinder(library)
    ranks = []
    for before, after in cuts:
        request = matcher_pb2.NextSegmentRequest(
            position=matcher_pb2.SongPosition(song_id=before, song_end=True), k=10
        )
        source = resolve_source(library, request)
        found = [c.song_id for c in finder.find(source, k=10, weights=Weights())]
        ranks.append(found.index(after) + 1 if after in found else None)
    store.close()
    hits = sum(r is not None for r in ranks)
    top1 = sum(r == 1 for r in ranks)
    return {
        "recordings": len(files),
        "pieces": library_count(workdir / "quality"),
        "cuts": len(cuts),
        "top10_rate": hits / len(cuts) if cuts else 0.0,
        "top1_rate": top1 / len(cuts) if cuts else 0.0,
        "piece_s": piece_s,
        "model_version": model_version,
    }


def library_count(path: Path) -> int:
    store = EdgeStore(path, DIMS)
    try:
        return SongLibrary(store).song_count()
    finally:
        store.close()


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": os.getloadavg(),
    }


def _spread(runs: list[dict[str, Any]], key: str, fmt: str = ".0f") -> str:
    values = [r[key] for r in runs]
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{median:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _baseline_lines(path: Path) -> list[str]:
    """The figures of an earlier run of this script (the previous matcher code), for
    before/after comparisons in one session."""
    old = json.loads(path.read_text())["speed"]
    index, latency = old["edge_index"], old["edge_next_segment"]
    grpc_latency = old["edge_next_segment_grpc"]
    return [
        "",
        f"Before (`{path.name}`: the previous matcher code, run in this session just before "
        "this one, one run each): indexing "
        f"{index['segments_per_s']:.0f} segments/s ({index['segments_per_cpu_s']:.0f} per "
        f"CPU-second; the peer {old['peer_index']['segments_per_s']:.0f}); NextSegment p50 / "
        f"p99 {latency['p50_ms']:.2f} / {latency['p99_ms']:.2f} ms store + scoring, "
        f"{grpc_latency['p50_ms']:.2f} / {grpc_latency['p99_ms']:.2f} ms through gRPC; index "
        f"build {index['optimize_seconds']:.0f} s.",
    ]


def write_report(results: dict[str, Any], out_dir: Path, baseline: Path | None = None) -> Path:
    date = results["date"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"matcher_{date}.json").write_text(json.dumps(results, indent=2) + "\n")
    s = results["speed"]
    edge_index, peer_index = s["edge_index_runs"], s["peer_index_runs"]
    latency, grpc_runs = s["edge_next_segment_runs"], s["edge_next_segment_grpc_runs"]
    p = s["peer_next_segment"]
    agreement = s["edge_agreement_with_exact"]
    load = s["load_average"]
    ratio_index = _median(edge_index, "segments_per_s") / _median(peer_index, "segments_per_s")
    ratio_cpu = _median(edge_index, "segments_per_cpu_s") / _median(
        peer_index, "segments_per_cpu_s"
    )
    kinds = " / ".join(
        f"{kind.replace('_', ' ')} "
        f"{statistics.median(r['by_kind'][kind]['p50_ms'] for r in latency):.2f} / "
        f"{statistics.median(r['by_kind'][kind]['p99_ms'] for r in latency):.2f}"
        for kind in QUERY_KINDS
    )
    by_kind = agreement["top10_overlap_by_kind"]
    lines = [
        f"# Matcher benchmark, {date}",
        "",
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
        "shared with other jobs while measuring (their load shows in the spread between runs). "
        f"Load average (1/5/15 min) at start {_load(results['machine']['load_average_at_start'])}"
        f", after indexing {_load(load['after_indexing'])}, after the edge latency runs "
        f"{_load(load['after_edge_latency'])}, at the end {_load(load['end'])}.",
        "",
        f"Workload: {results['songs']} synthetic songs x {SEGMENTS_PER_SONG} segments = "
        f"{edge_index[0]['segments']} segment points (+1 song point each); vectors synthetic "
        "(see the script: clusters plus heavy per-dimension noise, close to random in 64 "
        "dimensions, a hard case for a graph index). NextSegment k=10, queries cycling through "
        "three kinds: unfiltered, artist and 20 played-song exclusions, tempo-compatible.",
        "",
        f"Medians of {s['repeats']} runs (range in brackets). Indexing alternates edge and peer, "
        "each run into a new store; the latency runs pass over the same "
        f"{latency[0]['queries']} queries on the last edge store after an index build and a "
        "restart (as the service starts).",
        "",
        "| measure | qdrant-edge (embedded) | qdrant-client local (peer) | edge / peer |",
        "|---|---|---|---|",
        f"| indexing, segments/s | {_spread(edge_index, 'segments_per_s')} | "
        f"{_spread(peer_index, 'segments_per_s')} | {ratio_index:.2f}x |",
        f"| indexing, segments per CPU-second | {_spread(edge_index, 'segments_per_cpu_s')} | "
        f"{_spread(peer_index, 'segments_per_cpu_s')} | {ratio_cpu:.2f}x |",
        f"| NextSegment p50, ms (store + scoring) | {_spread(latency, 'p50_ms', '.2f')} | "
        f"{p['p50_ms']:.0f} | {_median(latency, 'p50_ms') / p['p50_ms']:.4f} |",
        f"| NextSegment p99, ms (store + scoring) | {_spread(latency, 'p99_ms', '.2f')} | "
        f"{p['p99_ms']:.0f} | {_median(latency, 'p99_ms') / p['p99_ms']:.4f} |",
        f"| NextSegment CPU time p50 / p99, ms | {_median(latency, 'cpu_p50_ms'):.2f} / "
        f"{_median(latency, 'cpu_p99_ms'):.2f} | {p['cpu_p50_ms']:.0f} / {p['cpu_p99_ms']:.0f} "
        "| - |",
        f"| NextSegment p50 / p99 through gRPC, ms | {_spread(grpc_runs, 'p50_ms', '.2f')} / "
        f"{_spread(grpc_runs, 'p99_ms', '.2f')} | - | - |",
        "",
        f"NextSegment p50 / p99 by query kind (edge, ms): {kinds}. Queries: "
        f"{latency[0]['queries']} per run on edge, {p['queries']} on the peer (its filtered "
        "queries take seconds each, so few; its p99 is close to its maximum).",
        "",
        f"Graph search (`hnsw_ef` {s['hnsw_ef']}, SEGUE_MATCHER_HNSW_EF) against exact search "
        f"(every vector scored) on the same store, {agreement['queries']} queries: "
        f"{agreement['top10_overlap']:.0%} of the top 10 songs agree, the first result agrees "
        f"for {agreement['top1_same']:.0%} (top 10 by kind: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in by_kind.items())
        + "). On these near-random vectors the nearest entries are barely nearer than the "
        "rest, the worst case for a graph index; a higher ef trades latency for agreement. "
        "The quality test below (real music, a small library) is searched exactly.",
        "",
        f"Edge index build (HNSW on `entry`, run once after indexing): "
        f"{s['edge_optimize_seconds']:.1f} s.",
        "",
        "Targets: NextSegment p99 <= 5 ms on the embedded store; indexing >= 5,000 segments/s.",
    ]
    if baseline is not None:
        lines += _baseline_lines(baseline)
    q = results.get("quality")
    lines += ["", "## Quality (real music, real model)", ""]
    if q:
        lines.append(
            f"{q['recordings']} recordings cut into {q['piece_s']:.0f} s pieces ({q['pieces']} "
            f"pieces indexed as songs), {q['cuts']} cuts: the true continuation ranked in the top "
            f"10 for {q['top10_rate']:.1%} of cuts (first for {q['top1_rate']:.1%}). Target: 90%. "
            f"Model: {q['model_version']}; default score weights; recordings: the 28 "
            "immich-memories-music tracks and ../shared/music/librosa."
        )
    else:
        lines.append("Not run (the model or the local analyzer was not available).")
    path = out_dir / f"matcher_{date}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--peer-queries", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="JSON of an earlier run to quote as 'before'")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="segue-bench-matcher-"))
    results: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "songs": args.songs,
    }
    try:
        if not args.skip_speed:
            results["speed"] = run_speed(
                args.songs, args.queries, args.peer_queries, args.repeats, workdir
            )
        if not args.skip_quality:
            results["quality"] = run_quality(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2)[:4000])
    if "speed" in results:
        print(f"wrote {write_report(results, args.out, args.baseline)}")
    else:
        print("speed skipped: no report written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
