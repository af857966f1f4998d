"""gRPC servicer of segue.v1.Mixer: receives two excerpts, streams back the rendered mix."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import structlog

from segue.audio import SUPPORTED_RATES_HZ, encode
from segue.log import get_logger
from segue.metrics import MIXER_RENDER_TIME_RATIO, MIXER_RENDERED_AUDIO_SECONDS
from segue.mixing.errors import MixInputError, MixLimitError
from segue.mixing.excerpt import ExcerptBuffer, check_info, decode_excerpt
from segue.mixing.mashup import render_mashup
from segue.mixing.render import (
    DEFAULT_CONTEXT_S,
    DEFAULT_TARGET_LUFS,
    Params,
    Rendered,
    Style,
    render_transition,
)
from segue.v1 import mixer_pb2, mixer_pb2_grpc

from .config import MixerConfig

log = get_logger("segue.mixer")

FORMATS = {
    mixer_pb2.OUTPUT_FORMAT_UNSPECIFIED: "wav",
    mixer_pb2.OUTPUT_FORMAT_WAV: "wav",
    mixer_pb2.OUTPUT_FORMAT_FLAC: "flac",
    mixer_pb2.OUTPUT_FORMAT_MP3: "mp3",
    mixer_pb2.OUTPUT_FORMAT_OGG: "ogg",
}
DEFAULT_OUTPUT_RATE_HZ = 44100
_render_ids = itertools.count(1)

Context = grpc.aio.ServicerContext[mixer_pb2.RenderRequest, mixer_pb2.RenderResponse]


@dataclass(frozen=True)
class Job:
    config: mixer_pb2.RenderConfig
    params: Params
    fmt: str
    mashup: bool


def params_from_config(config: mixer_pb2.RenderConfig, mixer: MixerConfig) -> Params:
    """Render parameters with defaults applied; MixInputError names a bad field."""
    rate = config.output_sample_rate_hz or DEFAULT_OUTPUT_RATE_HZ
    if rate not in SUPPORTED_RATES_HZ or rate < 22050:
        raise MixInputError(
            f"output_sample_rate_hz {rate} is not supported; use one of "
            f"{', '.join(str(r) for r in SUPPORTED_RATES_HZ if r >= 22050)}"
        )
    target = config.target_loudness_lufs or DEFAULT_TARGET_LUFS
    if not (math.isfinite(target) and -40.0 <= target <= -5.0):
        raise MixInputError(f"target_loudness_lufs must be in [-40, -5], got {target}")
    context = config.context_s or DEFAULT_CONTEXT_S
    if not (math.isfinite(context) and 0.0 < context <= 60.0):
        raise MixInputError(f"context_s must be in (0, 60], got {context}")
    return Params(
        rate_hz=rate,
        target_lufs=target,
        context_s=context,
        ceiling_dbtp=mixer.true_peak_ceiling_dbtp,
        max_stretch=mixer.max_stretch,
    )


def check_config(config: mixer_pb2.RenderConfig, mixer: MixerConfig, mashup: bool) -> Job:
    check_info("outgoing", config.outgoing)
    check_info("incoming", config.incoming)
    if (
        config.outgoing.WhichOneof("encoding") == "pcm"
        and config.incoming.WhichOneof("encoding") == "pcm"
        and config.outgoing.pcm.sample_rate_hz != config.incoming.pcm.sample_rate_hz
    ):
        raise MixInputError(
            f"mismatched sample rates: outgoing pcm is {config.outgoing.pcm.sample_rate_hz} Hz, "
            f"incoming pcm is {config.incoming.pcm.sample_rate_hz} Hz; send both at one rate"
        )
    if config.output_format not in FORMATS:
        raise MixInputError(
            f"unknown output_format {config.output_format}; use WAV, FLAC, MP3 or OGG"
        )
    Style.from_proto(config.style)  # validates
    if mashup:
        Style.for_mashup(config.mashup_bars or 8, config.style)
    return Job(config, params_from_config(config, mixer), FORMATS[config.output_format], mashup)


class MixerServicer(mixer_pb2_grpc.MixerServicer):
    def __init__(self, config: MixerConfig) -> None:
        self._config = config
        self._pool = ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="mixer-render"
        )
        self._in_flight = 0
        # Renders beyond the worker count wait their turn rather than fail; only a queue this
        # deep is refused, after the request stream is read (so the client gets the reason).
        self._render_slots = asyncio.Semaphore(config.max_concurrent)
        self._max_admitted = config.max_concurrent * 8

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def RenderTransition(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        async for response in self._render(request_iterator, context, mashup=False):
            yield response

    async def RenderMashup(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        async for response in self._render(request_iterator, context, mashup=True):
            yield response

    async def _render(
        self, requests: AsyncIterator[mixer_pb2.RenderRequest], context: Context, mashup: bool
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        structlog.contextvars.bind_contextvars(render_id=next(_render_ids), mashup=mashup)
        if self._in_flight >= self._max_admitted:
            async for _ in requests:
                pass
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._in_flight} renders in flight or queued; retry later",
            )
        self._in_flight += 1
        try:
            try:
                job, buffers = await self._receive(requests, context, mashup)
                async with self._render_slots:
                    rendered, encoded = await self._run(self._work, job, buffers)
            except MixInputError as e:
                log.info("render rejected", reason=str(e))
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            except MixLimitError as e:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
            report = rendered.report
            MIXER_RENDERED_AUDIO_SECONDS.inc(report.duration_s)
            log.info(
                "rendered",
                duration_s=round(report.duration_s, 2),
                overlap_bars=report.overlap_bars,
                format=job.fmt,
                bytes=len(encoded),
                speed_x=round(report.render_speed_x_realtime, 1),
            )
            yield mixer_pb2.RenderResponse(envelope=rendered.envelope())
            yield mixer_pb2.RenderResponse(report=report)
            step = self._config.output_chunk_bytes
            fmt_enum = next(k for k, v in FORMATS.items() if v == job.fmt and k != 0)
            for offset in range(0, len(encoded), step):
                yield mixer_pb2.RenderResponse(
                    audio=mixer_pb2.AudioOutput(
                        data=encoded[offset : offset + step],
                        format=fmt_enum,
                        sample_rate_hz=job.params.rate_hz,
                    )
                )
        finally:
            self._in_flight -= 1
            structlog.contextvars.unbind_contextvars("render_id", "mashup")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _receive(
        self, requests: AsyncIterator[mixer_pb2.RenderRequest], context: Context, mashup: bool
    ) -> tuple[Job, dict[int, ExcerptBuffer]]:
        job: Job | None = None
        buffers: dict[int, ExcerptBuffer] = {}
        ended = False
        rejected: MixInputError | MixLimitError | None = None
        async for request in requests:
            kind = request.WhichOneof("kind")
            if rejected is not None:
                # Read the client's stream to its end before answering: a status sent while
                # the client is still writing reaches it as a failed write, not as the reason.
                if kind == "end":
                    break
                continue
            if ended:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, f"a {kind} message arrived after end"
                )
            if kind == "config":
                if job is not None:
                    await context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION, "config was sent twice"
                    )
                try:
                    job = check_config(request.config, self._config, mashup)
                except MixInputError as e:
                    rejected = e
                    continue
                limit = self._config.max_excerpt_bytes
                buffers = {
                    mixer_pb2.SIDE_OUTGOING: ExcerptBuffer(
                        "outgoing", request.config.outgoing, limit
                    ),
                    mixer_pb2.SIDE_INCOMING: ExcerptBuffer(
                        "incoming", request.config.incoming, limit
                    ),
                }
            elif job is None:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "the first message must be config"
                )
            elif kind == "chunk":
                side = request.chunk.side
                if side not in buffers:
                    rejected = MixInputError(
                        f"chunk side {side} is neither SIDE_OUTGOING nor SIDE_INCOMING"
                    )
                    continue
                try:
                    buffers[side].add(request.chunk.data)
                except MixLimitError as e:
                    rejected = e
                    buffers.clear()  # free the memory now, not at the end of the stream
            elif kind == "end":
                ended = True
        if rejected is not None:
            raise rejected
        if job is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no config was sent")
        if not ended:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "the stream closed without end"
            )
        assert job is not None
        return job, buffers

    def _work(self, job: Job, buffers: dict[int, ExcerptBuffer]) -> tuple[Rendered, bytes]:
        """Decode, render and encode, in a worker thread."""
        started = time.perf_counter()
        rate, max_s = job.params.rate_hz, self._config.max_excerpt_s
        a = decode_excerpt(buffers[mixer_pb2.SIDE_OUTGOING], rate, max_s)
        b = decode_excerpt(buffers[mixer_pb2.SIDE_INCOMING], rate, max_s)
        if job.mashup:
            rendered = render_mashup(a, b, job.config, job.params)
        else:
            rendered = render_transition(a, b, Style.from_proto(job.config.style), job.params)
        encoded = encode(np.ascontiguousarray(rendered.audio.T), rate, job.fmt)
        MIXER_RENDER_TIME_RATIO.observe(
            (time.perf_counter() - started) / max(rendered.report.duration_s, 1e-9)
        )
        return rendered, encoded
