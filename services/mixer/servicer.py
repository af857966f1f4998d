"""gRPC servicer of segue.v1.Mixer: receives the audio, streams back the rendered mix.

A thin shell: requests are checked and collected in `requests`, stored analyses come from the
matcher (`analyses`), and the renders (segue.mixing's) run in worker threads: decode, check
the analyses against the decoded audio, render, encode (the functions at the end of this
module).

Streams are paced both ways: a request stream must arrive within the upload limits
(`requests.UploadPace`), and each response waits for the client to take it, at most
SEGUE_MIXER_WRITE_TIMEOUT_S. A refused request's memory is freed before it is answered: its
audio is dropped and the error travels without the traceback that would keep a worker's
decoded audio alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import grpc
import numpy as np
import structlog

from segue.audio import encode_planar
from segue.log import get_logger
from segue.metrics import MIXER_RENDER_TIME_RATIO, MIXER_RENDERED_AUDIO_SECONDS
from segue.mixing.continuous_mix import ContinuousMix, MixTrack, render_continuous_mix
from segue.mixing.errors import MixInputError, MixLimitError
from segue.mixing.excerpt import Excerpt, decode_excerpt, in_excerpt_time
from segue.mixing.mashup import render_mashup
from segue.mixing.mixdown import ENVELOPE_RATE_HZ
from segue.mixing.render import Rendered, render_transition
from segue.mixing.style import Style
from segue.v1 import common_pb2, mixer_pb2, mixer_pb2_grpc

from .analyses import (
    AnalysisValueError,
    BadStoredAnalysisError,
    StoredAnalyses,
    StoredAnalysisError,
    check_analysis,
)
from .config import MixerConfig
from .requests import (
    FORMAT_ENUMS,
    MIN_HEARD_S,
    MixIntake,
    TransitionIntake,
    UploadPace,
    UploadTooSlowError,
    stored_for_song,
)

__all__ = ["MixerServicer"]

log = get_logger("segue.mixer")
_render_ids = itertools.count(1)
# How long a call whose client stopped reading waits for its status to be queued behind the
# unread responses before the handler lets go (the client gets it if it ever reads on).
STATUS_WAIT_S = 1.0

Context = grpc.aio.ServicerContext[Any, Any]


class OrderError(Exception):
    """Request messages out of order; the client gets FAILED_PRECONDITION."""


# Errors that become the client's status, with the message naming the input.
Rejection = MixInputError | MixLimitError | StoredAnalysisError | OrderError | UploadTooSlowError
RENDER_REJECTIONS = (MixInputError, MixLimitError, StoredAnalysisError)


class Intake(Protocol):
    """A request's checked config and its audio as it streams in."""

    def add(self, chunk: Any) -> None: ...
    def clear(self) -> None: ...
    def stored_analyses_wanted(self) -> dict[str, str]: ...


IntakeT = TypeVar("IntakeT", bound=Intake)
ResultT = TypeVar("ResultT")


def status_of(error: Rejection) -> grpc.StatusCode:
    """The gRPC status a rejected request is answered with."""
    if isinstance(error, StoredAnalysisError):
        return error.code
    if isinstance(error, OrderError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, UploadTooSlowError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(error, MixLimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INVALID_ARGUMENT


def bare(error: Rejection) -> Rejection:
    """The error without its traceback and chained errors: their frames would keep the
    render's audio (a worker's decoded excerpts, the request's bytes) alive."""
    error.__traceback__ = None
    error.__cause__ = error.__context__ = None
    return error


async def paced(requests: AsyncIterator[Any], pace: UploadPace) -> AsyncIterator[Any]:
    """The request messages, each waited for only as long as `pace` allows; raises
    UploadTooSlowError when one is late."""
    iterator = aiter(requests)
    while True:
        try:
            request = await asyncio.wait_for(anext(iterator), pace.wait_s())
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise pace.too_slow() from None
        pace.arrived(request.ByteSize())
        yield request


@dataclass
class Reception(Generic[IntakeT]):
    """A request stream read message by message: the config starts the intake (`start`
    checks it), chunks fill it, end closes it; the first error is kept, not raised."""

    start: Callable[[Any], IntakeT]
    intake: IntakeT | None = None
    ended: bool = False
    rejected: Rejection | None = None

    def take(self, request: Any) -> bool:
        """Handles one message; True once reading can stop (an end after a rejection)."""
        kind = request.WhichOneof("kind")
        if self.rejected is not None:
            return bool(kind == "end")
        if self.ended:
            self.rejected = OrderError(f"a {kind} message arrived after end")
        elif kind == "config":
            if self.intake is not None:
                self.rejected = OrderError("config was sent twice")
            else:
                try:
                    self.intake = self.start(request.config)
                except RENDER_REJECTIONS as e:
                    self.rejected = bare(e)
        elif self.intake is None:
            self.rejected = OrderError("the first message must be config")
        elif kind == "chunk":
            try:
                self.intake.add(request.chunk)
            except (MixInputError, MixLimitError) as e:
                self.fail(e)
        elif kind == "end":
            self.ended = True
        return False

    def fail(self, error: Rejection) -> None:
        self.rejected = bare(error)
        if self.intake is not None:
            self.intake.clear()  # free the memory now, not at the end of the stream


@dataclass(frozen=True)
class RenderKind(Generic[IntakeT, ResultT]):
    """One RPC's render: its intake from the config, its job (run in a worker thread), and
    the response messages of its result (which also logs it)."""

    name: str
    start: Callable[[Any, MixerConfig], IntakeT]
    job: Callable[[IntakeT, dict[str, common_pb2.SongAnalysis], MixerConfig], ResultT]
    answer: Callable[[ResultT, MixerConfig], Generator[Any, None, None]]


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

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet over: receiving, queued, rendering or answering."""
        return self._in_flight

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._stored.close()

    # The handlers write their responses themselves, with context.write (each write waited
    # for, with a timeout), so they yield nothing; they stay async generators, the shape
    # grpc.aio and the server's interceptor expect of a streaming handler.
    async def RenderTransition(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        await self._serve(request_iterator, context, TRANSITION)
        return
        yield

    async def RenderMashup(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderResponse]:
        await self._serve(request_iterator, context, MASHUP)
        return
        yield

    async def RenderMix(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[mixer_pb2.RenderMixRequest], context: Context
    ) -> AsyncIterator[mixer_pb2.RenderMixResponse]:
        await self._serve(request_iterator, context, MIX)
        return
        yield

    async def _serve(
        self,
        requests: AsyncIterator[Any],
        context: Context,
        kind: RenderKind[IntakeT, ResultT],
    ) -> None:
        structlog.contextvars.bind_contextvars(render_id=next(_render_ids), kind=kind.name)
        stream = paced(requests, UploadPace.of(self._config))
        try:
            await self._admit(stream, context)
            self._in_flight += 1
            try:
                intake = await self._receive(stream, context, lambda c: kind.start(c, self._config))
                answer = kind.answer(await self._render(intake, kind.job, context), self._config)
                del intake  # the request's audio
                await self._write_all(context, answer)
            finally:
                self._in_flight -= 1
        finally:
            structlog.contextvars.unbind_contextvars("render_id", "kind")

    async def _admit(self, requests: AsyncIterator[Any], context: Context) -> None:
        """Refuses a render when the queue is full, after reading the client's stream."""
        if self._in_flight < self._max_admitted:
            return
        try:
            async for _ in requests:
                pass
        except UploadTooSlowError as e:
            await self._reject(context, bare(e))
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{self._in_flight} renders in flight or queued; retry later",
        )

    @staticmethod
    async def _reject(context: Context, error: Rejection) -> NoReturn:
        log.info("render rejected", reason=str(error), code=status_of(error).name)
        await context.abort(status_of(error), str(error))

    async def _render(
        self,
        intake: IntakeT,
        job: Callable[[IntakeT, dict[str, common_pb2.SongAnalysis], MixerConfig], ResultT],
        context: Context,
    ) -> ResultT:
        """Fetches the stored analyses and runs `job` in a worker when a slot is free."""
        try:
            stored = await self._stored.fetch_all(intake.stored_analyses_wanted())
            async with self._render_slots:
                result: ResultT = await asyncio.get_running_loop().run_in_executor(
                    self._pool, job, intake, stored, self._config
                )
                return result
        except RENDER_REJECTIONS as e:
            rejection = bare(e)
        # Answered outside the except block, so that nothing chains to the error.
        intake.clear()
        await self._reject(context, rejection)

    async def _receive(
        self, requests: AsyncIterator[Any], context: Context, start: Callable[[Any], IntakeT]
    ) -> IntakeT:
        """Reads config, chunks and end; `start(config)` checks the config.

        A rejected input (or message order) is answered only once the client's stream has
        ended: a status sent while the client is still writing reaches it as a failed write,
        not as the reason. A stream too slow for the upload pace is answered at once.
        """
        reception = Reception(start)
        try:
            async for request in requests:
                if reception.take(request):
                    break
        except UploadTooSlowError as e:
            reception.fail(e)
        if reception.rejected is not None:
            await self._reject(context, reception.rejected)
        if reception.intake is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no config was sent")
        if not reception.ended:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "the stream closed without end"
            )
        assert reception.intake is not None
        return reception.intake

    async def _write_all(self, context: Context, messages: Generator[Any, None, None]) -> None:
        """Writes the responses one by one, each as the client's flow control allows; ends
        the call with DEADLINE_EXCEEDED when the client takes none for the write timeout
        (the generator is closed first, which frees the rendered audio it holds)."""
        timeout_s = self._config.write_timeout_s
        for message in messages:
            try:
                await asyncio.wait_for(context.write(message), timeout_s)
            except TimeoutError:
                break
        else:
            return
        messages.close()
        log.warning("client stopped reading", write_timeout_s=timeout_s)
        # When the wait runs out, the status stays queued behind the unread responses.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the client accepted no response for {timeout_s:g} s "
                    "(SEGUE_MIXER_WRITE_TIMEOUT_S)",
                ),
                STATUS_WAIT_S,
            )


# The renders, in the worker threads: segue.mixing's rendering between decoding and encoding.


def check_client_analysis(name: str, analysis: common_pb2.SongAnalysis, duration_s: float) -> None:
    """A client's analysis against its decoded audio; MixInputError names the bad value."""
    try:
        check_analysis(analysis, duration_s)
    except AnalysisValueError as e:
        raise MixInputError(f"{name}.analysis.{e}") from None


def check_stored_analysis(field: str, analysis: common_pb2.SongAnalysis, duration_s: float) -> None:
    """The matcher's analysis against the decoded audio; BadStoredAnalysisError
    (FAILED_PRECONDITION) names the song id's field and the bad value."""
    try:
        check_analysis(analysis, duration_s)
    except AnalysisValueError as e:
        raise BadStoredAnalysisError(
            f"the matcher's stored analysis of {field} {analysis.song_id!r} is unusable: {e}"
        ) from None


def with_analysis(excerpt: Excerpt, stored: common_pb2.SongAnalysis | None) -> Excerpt:
    """The excerpt with its analysis checked: the client's as sent, or the song's stored
    analysis moved into the excerpt's time (song_start_s on)."""
    if stored is None:
        if excerpt.analysis is not None:
            check_client_analysis(excerpt.name, excerpt.analysis, excerpt.duration_s)
        return excerpt
    info = mixer_pb2.ExcerptInfo()
    info.CopyFrom(excerpt.info)
    info.analysis.CopyFrom(in_excerpt_time(stored, info.song_start_s, excerpt.duration_s))
    check_stored_analysis(f"{excerpt.name}.song_id", info.analysis, excerpt.duration_s)
    return replace(excerpt, info=info)


@dataclass
class RenderedPair:
    """A rendered transition (or mashup) and its encoded audio."""

    rendered: Rendered
    encoded: bytes
    fmt: str
    rate_hz: int


def render_transition_job(
    intake: TransitionIntake,
    stored: dict[str, common_pb2.SongAnalysis],
    mixer: MixerConfig,
) -> RenderedPair:
    """Decodes both excerpts, renders the transition (or mashup) and encodes it."""
    started = time.perf_counter()
    job = intake.job
    rate, max_s = job.params.rate_hz, mixer.max_excerpt_s
    a = decode_excerpt(intake.buffers[mixer_pb2.SIDE_OUTGOING], rate, max_s)
    intake.buffers[mixer_pb2.SIDE_OUTGOING].parts.clear()  # the bytes are decoded: let go
    a = with_analysis(a, stored.get("outgoing.song_id"))
    b = decode_excerpt(intake.buffers[mixer_pb2.SIDE_INCOMING], rate, max_s)
    intake.buffers[mixer_pb2.SIDE_INCOMING].parts.clear()
    b = with_analysis(b, stored.get("incoming.song_id"))
    if job.mashup:
        rendered = render_mashup(a, b, job.config, job.params)
    else:
        rendered = render_transition(a, b, Style.from_proto(job.config.style), job.params)
    del a, b
    encoded = encode_planar(rendered.audio, rate, job.fmt)
    MIXER_RENDER_TIME_RATIO.observe(
        (time.perf_counter() - started) / max(rendered.report.duration_s, 1e-9)
    )
    return RenderedPair(rendered, encoded, job.fmt, rate)


def pair_answer(
    result: RenderedPair, mixer: MixerConfig
) -> Generator[mixer_pb2.RenderResponse, None, None]:
    """The RenderTransition (or RenderMashup) answer: envelope, report, then the audio."""
    report = result.rendered.report
    MIXER_RENDERED_AUDIO_SECONDS.inc(report.duration_s)
    log.info(
        "rendered",
        duration_s=round(report.duration_s, 2),
        overlap_bars=report.overlap_bars,
        format=result.fmt,
        bytes=len(result.encoded),
        speed_x=round(report.render_speed_x_realtime, 1),
    )
    yield mixer_pb2.RenderResponse(envelope=result.rendered.envelope())
    yield mixer_pb2.RenderResponse(report=report)
    for audio in audio_messages(
        result.encoded, result.fmt, result.rate_hz, mixer.output_chunk_bytes
    ):
        yield mixer_pb2.RenderResponse(audio=audio)


@dataclass
class RenderedMix:
    """A rendered mix, its encoded audio and its .cue and JSON sheets."""

    mix: ContinuousMix
    fmt: str
    encoded: bytes
    cue: str
    sheet: str


def song_analysis(
    i: int, song: mixer_pb2.MixSong, stored: dict[str, common_pb2.SongAnalysis], duration_s: float
) -> common_pb2.SongAnalysis | None:
    """songs[i]'s analysis (the client's, else the stored one), checked against its audio."""
    if song.HasField("analysis"):
        check_client_analysis(f"songs[{i}]", song.analysis, duration_s)
        return song.analysis
    analysis = stored_for_song(stored, i)
    if analysis is not None:
        check_stored_analysis(f"songs[{i}].song_id", analysis, duration_s)
    return analysis


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
                analysis=song_analysis(i, song, stored, excerpt.duration_s),
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
    mix = render_continuous_mix(tracks, job.style, job.params, consume=True)
    del tracks  # the songs' audio was let go as each was played
    encoded = encode_planar(mix.audio, mix.rate_hz, job.fmt)
    MIXER_RENDER_TIME_RATIO.observe((time.perf_counter() - started) / max(mix.duration_s, 1e-9))
    return RenderedMix(
        mix, job.fmt, encoded, mix.cue_sheet(job.file_name, job.title), mix.to_json_text()
    )


def mix_answer(
    result: RenderedMix, mixer: MixerConfig
) -> Generator[mixer_pb2.RenderMixResponse, None, None]:
    """The RenderMix answer (mix_responses), logged as it starts."""
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
    yield from mix_responses(result, mixer.output_chunk_bytes)


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


TRANSITION = RenderKind[TransitionIntake, RenderedPair](
    "transition",
    lambda config, mixer: TransitionIntake.start(config, mixer, mashup=False),
    render_transition_job,
    pair_answer,
)
MASHUP = RenderKind[TransitionIntake, RenderedPair](
    "mashup",
    lambda config, mixer: TransitionIntake.start(config, mixer, mashup=True),
    render_transition_job,
    pair_answer,
)
MIX = RenderKind[MixIntake, RenderedMix]("mix", MixIntake.start, render_mix_job, mix_answer)
