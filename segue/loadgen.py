"""A bounded load generator for the three services, on loopback only.

It drives real Analyze streams (1 s chunks, each awaited before the next, so every chunk's
latency is measured), real NextSegment calls and real RenderTransition calls at a set rate and
concurrency for a bounded time, then reports latency percentiles, errors by status code and
the SLO verdicts that deploy/prometheus/ encodes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from segue.audio import mono_to_pcm
from segue.client.security import ClientSecurity, open_channel
from segue.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    matcher_pb2,
    matcher_pb2_grpc,
    mixer_pb2,
    mixer_pb2_grpc,
)

FloatArray = npt.NDArray[np.float32]
MODEL_RATE_HZ = 22050
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs

# Objectives, as in deploy/prometheus/rules (threshold, target fraction).
EMBEDDER_CHUNK_SLO = (0.050, 0.99)
MATCHER_NEXT_SLO = (0.025, 0.99)
MIXER_RATIO_SLO = (0.1, 0.99)
AVAILABILITY_SLO = 0.999
SERVER_ERROR_CODES = {"INTERNAL", "UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS",
                      "UNIMPLEMENTED"}


def require_loopback(address: str) -> None:
    """Refuses any target that does not resolve to a loopback address."""
    host = address.rsplit(":", 1)[0].strip("[]")
    for info in socket.getaddrinfo(host, None):
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_loopback:
            raise ValueError(f"load is only sent to loopback addresses; {address} is {ip}")


@dataclass
class LoadConfig:
    embedder: str = "127.0.0.1:50051"
    matcher: str = "127.0.0.1:50052"
    mixer: str = "127.0.0.1:50053"
    duration_s: float = 60.0
    # Operations started per second, across kinds, and at most this many at once.
    rate_per_s: float = 8.0
    concurrency: int = 16
    # Relative share of each kind of operation.
    mix: dict[str, float] = field(
        default_factory=lambda: {"analyze": 0.3, "next": 0.6, "render": 0.1}
    )
    stream_s: float = 10.0
    render_overlap_s: float = 4.0
    seed: int = 0


@dataclass
class LoadReport:
    duration_s: float
    latencies_s: dict[str, list[float]]
    codes: dict[str, Counter[str]]
    render_ratios: list[float]
    error_details: dict[str, int] = field(default_factory=dict)

    def percentile(self, kind: str, q: float) -> float:
        values = self.latencies_s.get(kind, [])
        return float(np.percentile(values, q)) if values else float("nan")

    def fraction_within(self, values: list[float], threshold: float) -> float:
        return float(np.mean(np.asarray(values) <= threshold)) if values else float("nan")

    def slo_verdicts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, values, (threshold, target) in (
            ("embedder chunk <= 50 ms", self.latencies_s.get("chunk", []), EMBEDDER_CHUNK_SLO),
            ("matcher NextSegment <= 25 ms", self.latencies_s.get("next", []), MATCHER_NEXT_SLO),
            ("mixer render <= 0.1x duration", self.render_ratios, MIXER_RATIO_SLO),
        ):
            got = self.fraction_within(values, threshold)
            out[name] = {"target": target, "measured": got, "samples": len(values),
                         "met": bool(values) and got >= target}
        for service, codes in self.codes.items():
            total = sum(codes.values())
            bad = sum(n for code, n in codes.items() if code in SERVER_ERROR_CODES)
            ok = 1.0 - bad / total if total else float("nan")
            met = total > 0 and ok >= AVAILABILITY_SLO
            out[f"{service} availability"] = {
                "target": AVAILABILITY_SLO, "measured": ok, "samples": total, "met": met,
            }
        return out

    def markdown(self) -> str:
        lines = [
            f"Load for {self.duration_s:.0f} s.",
            "",
            "| operation | count | p50 ms | p90 ms | p99 ms |",
            "|---|---|---|---|---|",
        ]
        for kind in sorted(self.latencies_s):
            values = self.latencies_s[kind]
            lines.append(
                f"| {kind} | {len(values)} | {self.percentile(kind, 50) * 1e3:.2f} | "
                f"{self.percentile(kind, 90) * 1e3:.2f} | {self.percentile(kind, 99) * 1e3:.2f} |"
            )
        lines += ["", "| service | status codes |", "|---|---|"]
        for service, codes in sorted(self.codes.items()):
            listed = ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
            lines.append(f"| {service} | {listed} |")
        if self.error_details:
            lines += ["", "| error | count |", "|---|---|"]
            lines += [f"| {e} | {n} |" for e, n in sorted(self.error_details.items())]
        lines += ["", "| SLO | target | measured | samples | verdict |", "|---|---|---|---|---|"]
        for name, v in self.slo_verdicts().items():
            lines.append(
                f"| {name} | {v['target']:.3f} | {v['measured']:.4f} | {v['samples']} | "
                f"{'met' if v['met'] else 'MISSED'} |"
            )
        return "\n".join(lines) + "\n"


class LoadGenerator:
    """Runs the load described by a LoadConfig over a library of mono 22050 Hz songs."""

    def __init__(self, config: LoadConfig, songs: dict[str, FloatArray]) -> None:
        for address in (config.embedder, config.matcher, config.mixer):
            require_loopback(address)
        if not songs:
            raise ValueError("the load generator needs at least one song")
        self.config = config
        self.songs = songs
        self.rng = random.Random(config.seed)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.codes: dict[str, Counter[str]] = defaultdict(Counter)
        self.render_ratios: list[float] = []
        self.indexed: list[str] = []
        self.error_details: Counter[str] = Counter()

    async def run(self) -> LoadReport:
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024)]
        security = ClientSecurity.from_env()  # SEGUE_TOKEN and TLS, as the SDK reads them
        async with (
            open_channel(self.config.embedder, security, options) as emb,
            open_channel(self.config.matcher, security, options) as mat,
            open_channel(self.config.mixer, security, options) as mix,
        ):
            self.embedder = embedder_pb2_grpc.EmbedderStub(emb)
            self.matcher = matcher_pb2_grpc.MatcherStub(mat)
            self.mixer = mixer_pb2_grpc.MixerStub(mix)
            await self._index_library()
            started = time.perf_counter()
            await self._drive(started + self.config.duration_s)
            elapsed = time.perf_counter() - started
        return LoadReport(elapsed, dict(self.latencies), dict(self.codes), self.render_ratios,
                          dict(self.error_details))

    async def _index_library(self) -> None:
        """Analyses every song once and stores it in the matcher (not counted as load)."""
        for song_id, audio in self.songs.items():
            analysis = await self._analyze(song_id, audio, record=False)
            if analysis is not None:
                await self._guard("matcher", self.matcher.UpsertSong(
                    matcher_pb2.UpsertSongRequest(
                        analysis=analysis, metadata=matcher_pb2.SongMetadata(title=song_id)
                    ), timeout=30))
                self.indexed.append(song_id)

    async def _drive(self, deadline: float) -> None:
        kinds = list(self.config.mix)
        weights = [self.config.mix[k] for k in kinds]
        ops: dict[str, Callable[[], Awaitable[None]]] = {
            "analyze": self._op_analyze, "next": self._op_next, "render": self._op_render,
        }
        gate = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.config.rate_per_s
        next_start = time.perf_counter()
        while next_start < deadline:
            await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
            kind = self.rng.choices(kinds, weights)[0]
            await gate.acquire()

            async def one(op: Callable[[], Awaitable[None]] = ops[kind]) -> None:
                try:
                    await op()
                finally:
                    gate.release()

            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_start += interval
        if tasks:
            await asyncio.gather(*tasks)

    def _error(self, service: str, error: grpc.aio.AioRpcError) -> None:
        self.codes[service][error.code().name] += 1
        self.error_details[f"{service} {error.code().name}: {(error.details() or '')[:120]}"] += 1

    def _render_pair(self) -> tuple[str, str]:
        """A song into itself (its end into its start): always tempo-compatible, so every
        render does the full work, and a rejection can only be a fault."""
        a = self.rng.choice(list(self.songs))
        return a, a

    async def _guard(self, service: str, call: Awaitable[Any]) -> Any:
        try:
            result = await call
        except grpc.aio.AioRpcError as e:
            self._error(service, e)
            return None
        self.codes[service]["OK"] += 1
        return result

    async def _analyze(self, song_id: str, audio: FloatArray,
                       record: bool) -> common_pb2.SongAnalysis | None:
        """One Analyze stream, 1 s chunks, each chunk's answer awaited before the next."""
        fmt = common_pb2.AudioFormat(sample_rate_hz=MODEL_RATE_HZ, channels=1,
                                     sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
        call: Any = self.embedder.Analyze()  # type: ignore[call-arg]  # write()-style call
        analysis: common_pb2.SongAnalysis | None = None
        try:
            await call.write(embedder_pb2.AnalyzeRequest(
                config=embedder_pb2.StreamConfig(song_id=song_id, format=fmt)))
            for start in range(0, len(audio) - MODEL_RATE_HZ + 1, MODEL_RATE_HZ):
                sent = time.perf_counter()
                await call.write(embedder_pb2.AnalyzeRequest(chunk=embedder_pb2.AudioChunk(
                    pcm=mono_to_pcm(audio[start:start + MODEL_RATE_HZ],
                                    common_pb2.SAMPLE_FORMAT_F32LE))))
                while True:
                    response = await call.read()
                    if response is _EOF or response.WhichOneof("kind") == "windows":
                        break
                if record:
                    self.latencies["chunk"].append(time.perf_counter() - sent)
            await call.write(embedder_pb2.AnalyzeRequest(end=embedder_pb2.EndOfStream()))
            await call.done_writing()
            async for response in _responses(call):
                if response.WhichOneof("kind") == "analysis":
                    analysis = response.analysis
            self.codes["embedder"]["OK"] += 1
        except grpc.aio.AioRpcError as e:
            self._error("embedder", e)
        return analysis

    async def _op_analyze(self) -> None:
        song_id = self.rng.choice(list(self.songs))
        audio = self.songs[song_id][: int(self.config.stream_s * MODEL_RATE_HZ)]
        started = time.perf_counter()
        await self._analyze(f"load-{song_id}", audio, record=True)
        self.latencies["analyze_stream"].append(time.perf_counter() - started)

    async def _op_next(self) -> None:
        if not self.indexed:
            return
        request = matcher_pb2.NextSegmentRequest(
            position=matcher_pb2.SongPosition(song_id=self.rng.choice(self.indexed),
                                              song_end=True),
            k=10,
        )
        started = time.perf_counter()
        if await self._guard("matcher", self.matcher.NextSegment(request, timeout=10)):
            self.latencies["next"].append(time.perf_counter() - started)

    async def _op_render(self) -> None:
        a, b = self._render_pair()
        excerpt_s = self.config.render_overlap_s + 6.0
        fmt = common_pb2.AudioFormat(sample_rate_hz=MODEL_RATE_HZ, channels=1,
                                     sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
        config = mixer_pb2.RenderConfig(
            outgoing=mixer_pb2.ExcerptInfo(pcm=fmt),
            incoming=mixer_pb2.ExcerptInfo(pcm=fmt),
            style=mixer_pb2.TransitionStyle(seconds=self.config.render_overlap_s),
            output_format=mixer_pb2.OUTPUT_FORMAT_WAV,
        )
        n = int(excerpt_s * MODEL_RATE_HZ)

        async def requests() -> AsyncIterator[mixer_pb2.RenderRequest]:
            yield mixer_pb2.RenderRequest(config=config)
            for side, song in ((mixer_pb2.SIDE_OUTGOING, self.songs[a][-n:]),
                               (mixer_pb2.SIDE_INCOMING, self.songs[b][:n])):
                pcm = mono_to_pcm(song, common_pb2.SAMPLE_FORMAT_F32LE)
                yield mixer_pb2.RenderRequest(chunk=mixer_pb2.ExcerptChunk(side=side, data=pcm))
            yield mixer_pb2.RenderRequest(end=mixer_pb2.EndOfInput())

        started = time.perf_counter()
        duration = 0.0
        try:
            async for response in self.mixer.RenderTransition(requests(), timeout=60):
                if response.WhichOneof("kind") == "report":
                    duration = response.report.duration_s
            self.codes["mixer"]["OK"] += 1
        except grpc.aio.AioRpcError as e:
            self._error("mixer", e)
            return
        elapsed = time.perf_counter() - started
        self.latencies["render"].append(elapsed)
        if duration > 0:
            self.render_ratios.append(elapsed / duration)


async def _responses(call: Any) -> AsyncIterator[embedder_pb2.AnalyzeResponse]:
    while True:
        response = await call.read()
        if response is _EOF:
            return
        yield response
