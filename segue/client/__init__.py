"""Typed Python clients for the Segue services.

Example::

    from segue.client import EmbedderClient, Excerpt, MatcherClient, MixerClient, SegueError

    async with EmbedderClient("127.0.0.1:50051") as embedder:
        result = await embedder.analyze_file("song.mp3", song_id="song-1")
        print(result.analysis.tempo.bpm, result.analysis.key.camelot)
    async with MatcherClient("127.0.0.1:50052") as matcher:
        await matcher.upsert_song(result.analysis)
        best = await matcher.next_segment("song-1", k=5)
        try:
            await matcher.get_song("no-such-song")
        except SegueError as e:
            print(e)  # Matcher.GetSong at 127.0.0.1:50052: not_found: ...
    async with MixerClient("127.0.0.1:50053") as mixer:
        mix = await mixer.render_transition(
            Excerpt.from_file("song.mp3", result.analysis),
            Excerpt.from_file("next.mp3"), output_format="mp3")
        print(mix.report.overlap_bars, "bars:", mix.report.length_reason)

- Results: the dataclasses AnalyzeResult and MixResult, and the protobuf messages that
  `segue.client.types` lists and explains.
- Errors: every call raises only `segue.client.errors` exceptions (SegueError and one
  subclass per status code, e.g. NotFoundError), with the gRPC error as `__cause__`.
- Deadlines: one policy, `segue.client.timeouts`; `timeout_s` on each client and each call.
"""

from segue.client.embedder import AnalyzeResult, EmbedderClient, EmbedderSyncClient
from segue.client.errors import (
    CallCancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SegueError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from segue.client.matcher import MatcherClient, make_metadata
from segue.client.mixer import Excerpt, MixerClient, MixResult, MixSong, RenderedMix
from segue.client.timeouts import DEFAULT_POLICY, USE_CLIENT_TIMEOUT, TimeoutPolicy
from segue.client.types import TransitionStyle

__all__ = [
    "DEFAULT_POLICY",
    "USE_CLIENT_TIMEOUT",
    "AnalyzeResult",
    "CallCancelledError",
    "DeadlineExceededError",
    "EmbedderClient",
    "EmbedderSyncClient",
    "Excerpt",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "MatcherClient",
    "MixResult",
    "MixSong",
    "MixerClient",
    "NotFoundError",
    "PermissionDeniedError",
    "RenderedMix",
    "ResourceExhaustedError",
    "SegueError",
    "TimeoutPolicy",
    "TransitionStyle",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "make_metadata",
]
