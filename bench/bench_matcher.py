"""Matcher benchmark: indexing speed, NextSegment latency, and continuation quality.

    .venv/bin/python bench/bench_matcher.py            # full run: 5,000 songs, 100k segments
    .venv/bin/python bench/bench_matcher.py --songs 500 --skip-quality   # quick

Speed runs on synthetic vectors with realistic structure (20 feel clusters; each segment's
entry close to the previous segment's exit; tempos and keys drawn like a DJ library), the
same workload on the embedded store (qdrant-edge) and on the peer, qdrant-client's local mode.
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

from qdrant_client import QdrantClient  # noqa: E402

from segue.config import ServerConfig  # noqa: E402
from segue.server import start_server  # noqa: E402
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc  # noqa: E402
from services.matcher.client_store import ClientStore  # noqa: E402
from services.matcher.edge_store import EdgeStore  # noqa: E402
from services.matcher.library import SongLibrary  # noqa: E402
from services.matcher.next_segment import (  # noqa: E402
    NextSegmentFinder,
    resolve_source,
)
from services.matcher.scoring import Weights  # noqa: E402
from services.matcher.servicer import MatcherServicer, register  # noqa: E402
from services.matcher.store import SegmentStore, VectorDims  # noqa: E402

DIMS = VectorDims(feel=32, transition=64)
SEGMENTS_PER_SONG = 20
CAMELOT = [f"{n}{m}" for n in range(1, 13) for m in "AB"]


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


def service_path_latency(
    library: SongLibrary, requests: list[matcher_pb2.NextSegmentRequest]
) -> dict[str, Any]:
    """NextSegment through the store + scoring path (no gRPC)."""
    from services.matcher.next_segment import user_filter_for

    finder = NextSegmentFinder(library)
    for request in requests[:20]:  # warm caches
        source = resolve_source(library, request)
        finder.find(
            source, k=10, weights=Weights(), user_filter=user_filter_for(request.filter, source)
        )
    samples, cpu = [], []
    for request in requests:
        started, cpu_started = time.perf_counter(), time.process_time()
        source = resolve_source(library, request)
        finder.find(
            source, k=10, weights=Weights(), user_filter=user_filter_for(request.filter, source)
        )
        samples.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return {
        "queries": len(samples),
        "p50_ms": percentile_ms(samples, 50),
        "p99_ms": percentile_ms(samples, 99),
        "mean_ms": statistics.fmean(samples) * 1e3,
        "cpu_p50_ms": percentile_ms(cpu, 50),
        "cpu_p99_ms": percentile_ms(cpu, 99),
    }


def grpc_latency(
    library: SongLibrary, requests: list[matcher_pb2.NextSegmentRequest]
) -> dict[str, Any]:
    async def main() -> list[float]:
        config = ServerConfig(service="matcher", host="127.0.0.1", grpc_port=0)
        server = await start_server(
            config, register(MatcherServicer(library)), serve_metrics_port=False
        )
        channel = __import__("grpc").aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = matcher_pb2_grpc.MatcherStub(channel)
        for request in requests[:20]:
            await stub.NextSegment(request)
        samples = []
        for request in requests:
            started = time.perf_counter()
            await stub.NextSegment(request)
            samples.append(time.perf_counter() - started)
        await channel.close()
        await server.stop(0)
        return samples

    samples = asyncio.run(main())
    return {
        "queries": len(samples),
        "p50_ms": percentile_ms(samples, 50),
        "p99_ms": percentile_ms(samples, 99),
    }


def run_speed(songs: int, queries: int, peer_queries: int, workdir: Path) -> dict[str, Any]:
    library_songs = synthetic_library(songs)
    requests = next_segment_requests(songs, queries, seed=1)
    results: dict[str, Any] = {}

    edge = EdgeStore(workdir / "edge", DIMS)
    edge_library = SongLibrary(edge)
    print(f"indexing {songs} songs into qdrant-edge ...", flush=True)
    results["edge_index"] = index_library(edge_library, library_songs)
    started = time.perf_counter()
    edge.optimize()
    results["edge_index"]["optimize_seconds"] = time.perf_counter() - started
    edge_library.preload_feels()  # as the service does at start-up
    print("edge latency ...", flush=True)
    results["edge_next_segment"] = service_path_latency(edge_library, requests)
    results["edge_next_segment_grpc"] = grpc_latency(edge_library, requests)
    edge.close()

    peer: SegmentStore = ClientStore(QdrantClient(location=":memory:"), "bench", DIMS)
    peer_library = SongLibrary(peer)
    print(f"indexing {songs} songs into qdrant-client local mode ...", flush=True)
    results["peer_index"] = index_library(peer_library, library_songs)
    peer_library.preload_feels()
    print("peer latency ...", flush=True)
    results["peer_next_segment"] = service_path_latency(peer_library, requests[:peer_queries])
    peer.close()
    return results


def run_quality(workdir: Path) -> dict[str, Any] | None:
    """Top-10 continuation rate on real music cut into pieces (needs the real model)."""
    model = REPO / "models" / "segue_stream.onnx"
    try:
        from segue.audio import decode
        from segue.cli.analyze import DECODE_RATE_HZ, _local_analyzer
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


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    date = results["date"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"matcher_{date}.json").write_text(json.dumps(results, indent=2) + "\n")
    s = results["speed"]
    e, p = s["edge_next_segment"], s["peer_next_segment"]
    lines = [
        f"# Matcher benchmark, {date}",
        "",
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
        f"load average at start {results['machine']['load_average_at_start']} "
        "(a shared machine: other jobs ran during the measurement).",
        "",
        f"Workload: {results['songs']} synthetic songs x {SEGMENTS_PER_SONG} segments = "
        f"{s['edge_index']['segments']} segment points (+1 song point each); vectors synthetic "
        "with realistic structure (see the script). NextSegment k=10, a third of queries with "
        "artist and played-song exclusions, a third tempo-compatible.",
        "",
        "| measure | qdrant-edge (embedded) | qdrant-client local (peer) | edge / peer |",
        "|---|---|---|---|",
        f"| indexing, segments/s | {s['edge_index']['segments_per_s']:.0f} | "
        f"{s['peer_index']['segments_per_s']:.0f} | "
        f"{s['edge_index']['segments_per_s'] / s['peer_index']['segments_per_s']:.2f}x |",
        f"| NextSegment p50, ms (store + scoring) | {e['p50_ms']:.2f} | {p['p50_ms']:.2f} | "
        f"{e['p50_ms'] / p['p50_ms']:.3f} |",
        f"| NextSegment p99, ms (store + scoring) | {e['p99_ms']:.2f} | {p['p99_ms']:.2f} | "
        f"{e['p99_ms'] / p['p99_ms']:.3f} |",
        f"| NextSegment CPU time p50 / p99, ms | {e['cpu_p50_ms']:.2f} / {e['cpu_p99_ms']:.2f} | "
        f"{p['cpu_p50_ms']:.2f} / {p['cpu_p99_ms']:.2f} | - |",
        f"| indexing, segments per CPU-second | {s['edge_index']['segments_per_cpu_s']:.0f} | "
        f"{s['peer_index']['segments_per_cpu_s']:.0f} | "
        f"{s['edge_index']['segments_per_cpu_s'] / s['peer_index']['segments_per_cpu_s']:.2f}x |",
        f"| NextSegment p50 / p99 through gRPC, ms | {s['edge_next_segment_grpc']['p50_ms']:.2f}"
        f" / {s['edge_next_segment_grpc']['p99_ms']:.2f} | - | - |",
        "",
        f"Edge index build (HNSW on `entry`, run once after indexing): "
        f"{s['edge_index']['optimize_seconds']:.1f} s. Queries: {e['queries']} on edge, "
        f"{p['queries']} on the peer.",
        "",
        "Targets: NextSegment p99 <= 5 ms on the embedded store; indexing >= 5,000 segments/s.",
    ]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--peer-queries", type=int, default=200)
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
            results["speed"] = run_speed(args.songs, args.queries, args.peer_queries, workdir)
        if not args.skip_quality:
            results["quality"] = run_quality(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if "speed" in results:
        print(f"wrote {write_report(results, args.out)}")
    else:
        print("speed skipped: no report written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
