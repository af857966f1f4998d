"""gRPC servicer of segue.v1.Mixer: receives the audio, streams back the rendered mix.

A thin shell: requests are checked and collected in `requests`, stored analyses come from the
matcher (`analyses`), and the renders (segue.mixing's) run in worker threads: decode, render,
encode (the functions at the end of this module).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import numpy as np
import structlog

from segue.audio import encode
from segue.log import get_logger
from segue.metrics import MIXER_RENDER_TIME_RATIO, MIXER_RENDERED_AUDIO_SECONDS
from segue.mixing.continuous_mix import ContinuousMix, MixTrack, render_continuous_mix
from segue.mixing.errors import MixInputError, MixLimitError
from segue.mixing.excerpt import Excerpt, decode_excerpt
from segue.mixing.mashup import render_mashup
from segue.mixing.mixdown import ENVELOPE_RATE_HZ
from segue.mixing.render import Rendered, render_transition
from segue.mixing.style import Style
from segue.v1 import common_pb2, mixer_pb2, mixer_pb2_grpc

from .analyses import StoredAnalyses, StoredAnalysisError, in_excerpt_time
from .config import MixerConfig
from .requests import FORMAT_ENUMS, MIN_HEARD_S, MixIntake, TransitionIntake, stored_for_song

__all__ = ["MixerServicer"]

log = get_logger("segue.mixer")
_render_ids = itertools.count(1)

Context = grpc.aio.ServicerContext[Any, Any]


class OrderError(Exception):
    """Request messages out of order; the client gets FAILED_PRECONDITION."""


# Errors that become the client's status, with the message naming the input.
Rejection = MixInputError | MixLimitError | StoredAnalysisError | OrderError


class Intake(Protocol):
    """A request's checked config and its audio as it streams in."""

    def add(self, chunk: Any) -> None: ...
    def clear(self) -> None: ...
    def stored_analyses_wanted(self) -> dict[str, str]: ...


IntakeT = TypeVar("IntakeT", bound=Intake)


def status_of(error: Rejection) -> grpc.StatusCode:
    """The gRPC status a rejected request is answered with."""
    if isinstance(error, StoredAnalysisError):
        return error.code
    if isinstance(error, OrderError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, MixLimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INVALID_ARGUMENT


class MixerServicer(mixer_pb2_grpc.MixerServicer):
    def __init__(self, config: MixerConfig) -> None:
        self._config = config
        self._pool = ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="mixer-render"
        )
        self._stored = StoredAnalyses(config.matcher_addr, config.matcher_timeout_s)
        self._in_flight = 0
        # Renders beyond the worker count wait their turn rather than fail; only a queue this
        # deep is refused, after the request stream is read (so the client gets the reason).
        self._render_slots = asyncio.Semaphore(config.max_concurrent)
        self._max_admitted = config.max_concurrent * 8

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._stored.close()

    async def RenderTransition(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        async for response in self._render_pair(request_iterator, context, mashup=False):
            yield response

    async def RenderMashup(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        async for response in self._render_pair(request_iterator, context, mashup=True):
            yield response

    async def RenderMix(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderMixRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderMixResponse]:
        structlog.contextvars.bind_contextvars(render_id=next(_render_ids), kind="mix")
        try:
            await self._admit(request_iterator, context)
            self._in_flight += 1
            try:
                intake = await self._receive(
                    request_iterator, context, lambda c: MixIntake.start(c, self._config)
                )
                try:
                    stored = await self._fetch(intake)
                    async with self._render_slots:
                        result = await self._run(render_mix_job, intake, stored, self._config)
                except (MixInputError, MixLimitError, StoredAnalysisError) as e:
                    await self._reject(context, e)
                mix = result.mix
                MIXER_RENDERED_AUDIO_SECONDS.inc(mix.duration_s)
                log.info(
                    "rendered mix",
                    songs=len(mix.cues),
                    duration_s=round(mix.duration_s, 1),
                    format=result.fmt,
                    bytes=len(result.encoded),
                    speed_x=round(mix.duration_s / max(mix.render_s, 1e-9), 1),
                )
                for response in mix_responses(result, self._config.output_chunk_bytes):
                    yield response
            finally:
                self._in_flight -= 1
        finally:
            structlog.contextvars.unbind_contextvars("render_id", "kind")

    async def _render_pair(
        self, requests: AsyncIterator[mixer_pb2.RenderRequest], context: Context, mashup: bool
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        structlog.contextvars.bind_contextvars(
            render_id=next(_render_ids), kind="mashup" if mashup else "transition"
        )
        try:
            await self._admit(requests, context)
            self._in_flight += 1
            try:
                intake = await self._receive(
                    requests, context, lambda c: TransitionIntake.start(c, self._config, mashup)
                )
                try:
                    stored = await self._fetch(intake)
                    async with self._render_slots:
                        rendered, encoded = await self._run(
                            render_transition_job, intake, stored, self._config
                        )
                except (MixInputError, MixLimitError, StoredAnalysisError) as e:
                    await self._reject(context, e)
                job = intake.job
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
                for audio in audio_messages(
                    encoded, job.fmt, job.params.rate_hz, self._config.output_chunk_bytes
                ):
                    yield mixer_pb2.RenderResponse(audio=audio)
            finally:
                self._in_flight -= 1
        finally:
            structlog.contextvars.unbind_contextvars("render_id", "kind")

    async def _admit(self, requests: AsyncIterator[Any], context: Context) -> None:
        """Refuses a render when the queue is full, after reading the client's stream."""
        if self._in_flight >= self._max_admitted:
            async for _ in requests:
                pass
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._in_flight} renders in flight or queued; retry later",
            )

    @staticmethod
    async def _reject(context: Context, error: Rejection) -> NoReturn:
        log.info("render rejected", reason=str(error), code=status_of(error).name)
        await context.abort(status_of(error), str(error))

    async def _fetch(self, intake: Intake) -> dict[str, common_pb2.SongAnalysis]:
        """The stored analyses the request asks for by song id, from the matcher."""
        return await self._stored.fetch_all(intake.stored_analyses_wanted())

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _receive(
        self, requests: AsyncIterator[Any], context: Context, start: Callable[[Any], IntakeT]
    ) -> IntakeT:
        """Reads config, chunks and end; `start(config)` checks the config.

        A rejected input (or message order) is answered only once the client's stream has
        ended: a status sent while the client is still writing reaches it as a failed write,
        not as the reason.
        """
        intake: IntakeT | None = None
        ended = False
        rejected: Rejection | None = None
        async for request in requests:
            kind = request.WhichOneof("kind")
            if rejected is not None:
                if kind == "end":
                    break
                continue
            if ended:
                rejected = OrderError(f"a {kind} message arrived after end")
            elif kind == "config":
                if intake is not None:
                    rejected = OrderError("config was sent twice")
                    continue
                try:
                    intake = start(request.config)
                except (MixInputError, MixLimitError, StoredAnalysisError) as e:
                    rejected = e
            elif intake is None:
                rejected = OrderError("the first message must be config")
            elif kind == "chunk":
                try:
                    intake.add(request.chunk)
                except (MixInputError, MixLimitError) as e:
                    rejected = e
                    intake.clear()  # free the memory now, not at the end of the stream
            elif kind == "end":
                ended = True
        if rejected is not None:
            await self._reject(context, rejected)
        if intake is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no config was sent")
        if not ended:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "the stream closed without end"
            )
        assert intake is not None
        return intake


# The renders, in the worker threads: segue.mixing's rendering between decoding and encoding.


def _with_stored(excerpt: Excerpt, stored: common_pb2.SongAnalysis | None) -> Excerpt:
    """The excerpt with the song's stored analysis moved into its time (song_start_s on)."""
    if stored is None:
        return excerpt
    info = mixer_pb2.ExcerptInfo()
    info.CopyFrom(excerpt.info)
    info.analysis.CopyFrom(in_excerpt_time(stored, info.song_start_s, excerpt.duration_s))
    return replace(excerpt, info=info)


def render_transition_job(
    intake: TransitionIntake,
    stored: dict[str, common_pb2.SongAnalysis],
    mixer: MixerConfig,
) -> tuple[Rendered, bytes]:
    """Decodes both excerpts, renders the transition (or mashup) and encodes it."""
    started = time.perf_counter()
    job = intake.job
    rate, max_s = job.params.rate_hz, mixer.max_excerpt_s
    a = decode_excerpt(intake.buffers[mixer_pb2.SIDE_OUTGOING], rate, max_s)
    b = decode_excerpt(intake.buffers[mixer_pb2.SIDE_INCOMING], rate, max_s)
    a = _with_stored(a, stored.get("outgoing.song_id"))
    b = _with_stored(b, stored.get("incoming.song_id"))
    if job.mashup:
        rendered = render_mashup(a, b, job.config, job.params)
    else:
        rendered = render_transition(a, b, Style.from_proto(job.config.style), job.params)
    encoded = encode(np.ascontiguousarray(rendered.audio.T), rate, job.fmt)
    MIXER_RENDER_TIME_RATIO.observe(
        (time.perf_counter() - started) / max(rendered.report.duration_s, 1e-9)
    )
    return rendered, encoded


@dataclass
class RenderedMix:
    """A rendered mix, its encoded audio and its .cue and JSON sheets."""

    mix: ContinuousMix
    fmt: str
    encoded: bytes
    cue: str
    sheet: str


def decode_songs(
    intake: MixIntake, stored: dict[str, common_pb2.SongAnalysis], mixer: MixerConfig
) -> list[MixTrack]:
    """Every song decoded at the mix's rate, with its analysis (the client's or the stored).

    Raises MixLimitError when the songs together run over the mix's decoded-seconds limit,
    MixInputError naming `songs[i].entry_s` when a song is entered under 2 s before its end.
    """
    job = intake.job
    rate = job.params.rate_hz
    tracks: list[MixTrack] = []
    total_s = 0.0
    for i, (song, buffer) in enumerate(zip(job.config.songs, intake.buffers, strict=True)):
        excerpt = decode_excerpt(buffer, rate, mixer.max_excerpt_s)
        buffer.parts.clear()  # the encoded bytes are no longer needed
        if song.entry_s + MIN_HEARD_S > excerpt.duration_s:
            raise MixInputError(
                f"songs[{i}].entry_s ({song.entry_s:.2f} s) leaves under {MIN_HEARD_S:.0f} s of "
                f"the song, which lasts {excerpt.duration_s:.2f} s"
            )
        total_s += excerpt.duration_s
        if total_s > mixer.max_mix_s:
            raise MixLimitError(
                f"songs[0..{i}] last {total_s:.0f} s once decoded: over this mixer's limit of "
                f"{mixer.max_mix_s:.0f} s per mix"
            )
        tracks.append(
            MixTrack(
                audio=excerpt.audio,
                entry_s=song.entry_s,
                exit_s=song.exit_s,
                title=song.title or song.song_id,
                song_id=song.song_id,
                uri=song.uri,
                analysis=song.analysis if song.HasField("analysis") else stored_for_song(stored, i),
            )
        )
    return tracks


def render_mix_job(
    intake: MixIntake, stored: dict[str, common_pb2.SongAnalysis], mixer: MixerConfig
) -> RenderedMix:
    """Decodes the songs, renders the continuous mix and encodes it with its cue sheets."""
    started = time.perf_counter()
    job = intake.job
    tracks = decode_songs(intake, stored, mixer)
    mix = render_continuous_mix(tracks, job.style, job.params)
    del tracks  # the decoded songs: the mix holds its own audio
    encoded = encode(np.ascontiguousarray(mix.audio.T), mix.rate_hz, job.fmt)
    MIXER_RENDER_TIME_RATIO.observe((time.perf_counter() - started) / max(mix.duration_s, 1e-9))
    return RenderedMix(
        mix, job.fmt, encoded, mix.cue_sheet(job.file_name, job.title), mix.to_json_text()
    )


def transition_messages(mix: ContinuousMix) -> Iterator[mixer_pb2.MixTransition]:
    """One MixTransition per transition, in order."""
    for t in mix.transitions:
        outgoing, incoming = mix.cues[t.number - 1], mix.cues[t.number]
        yield mixer_pb2.MixTransition(
            number=t.number,
            outgoing_song_id=outgoing.song_id,
            incoming_song_id=incoming.song_id,
            start_s=t.start_s,
            overlap_start_s=t.overlap_start_s,
            overlap_end_s=t.overlap_end_s,
            end_s=t.end_s,
            incoming_resume_s=t.incoming_resume_s,
            join_offset_samples=t.join_offset_samples,
            report=t.report,
        )


def gain_messages(mix: ContinuousMix) -> Iterator[mixer_pb2.MixGains]:
    """Each song's gain lane over the mix, from its first to its last audible point."""
    for i, lane in enumerate(mix.gains):
        heard = np.flatnonzero(lane > 0.0)
        lo, hi = (int(heard[0]), int(heard[-1]) + 1) if heard.size else (0, 0)
        yield mixer_pb2.MixGains(
            song_index=i,
            rate_hz=ENVELOPE_RATE_HZ,
            start_s=lo / ENVELOPE_RATE_HZ,
            gain=lane[lo:hi].astype(np.float32).tolist(),
        )


def mix_responses(result: RenderedMix, chunk_bytes: int) -> Iterator[mixer_pb2.RenderMixResponse]:
    """The RenderMix answer: transitions, the cue sheets, the gains, then the audio."""
    mix = result.mix
    for t in transition_messages(mix):
        yield mixer_pb2.RenderMixResponse(transition=t)
    yield mixer_pb2.RenderMixResponse(
        cue_sheet=mixer_pb2.MixCueSheet(
            cue=result.cue,
            json=result.sheet,
            duration_s=mix.duration_s,
            loudness_lufs=mix.loudness_lufs,
            true_peak_dbtp=mix.true_peak_dbtp,
            render_s=mix.render_s,
        )
    )
    for gains in gain_messages(mix):
        yield mixer_pb2.RenderMixResponse(gains=gains)
    for audio in audio_messages(result.encoded, result.fmt, mix.rate_hz, chunk_bytes):
        yield mixer_pb2.RenderMixResponse(audio=audio)


def audio_messages(
    encoded: bytes, fmt: str, rate_hz: int, chunk_bytes: int
) -> Iterator[mixer_pb2.AudioOutput]:
    """The encoded file in pieces of at most `chunk_bytes` bytes."""
    for offset in range(0, len(encoded), chunk_bytes):
        yield mixer_pb2.AudioOutput(
            data=encoded[offset : offset + chunk_bytes],
            format=FORMAT_ENUMS[fmt],
            sample_rate_hz=rate_hz,
        )
