"""RenderMix and analyses by song id, over real gRPC on loopback, against a real matcher.

The mixer renders a whole playlist as the in-process continuous mix does, sample for sample,
and takes the songs' analyses from the matcher instead of analysing them again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from mixer_fixtures import RATE, MixerThreadServer, analysis_of, song
from render_mix_fixtures import (
    MIX_TRACKS,
    RealSong,
    matcher_with,
    mixer_asking,
    real_song,
    store,
)
from thread_server import ThreadServer

from devkit.localstack import free_port
from segue.audio import decode, encode
from segue.cli.mix import mix_from_rendered
from segue.client.mixer import Excerpt, MixerClient, MixResult, MixSong, RenderedMix
from segue.mixing.continuous_mix import (
    ContinuousMix,
    MixTrack,
    TransitionSummary,
    render_continuous_mix,
)
from segue.mixing.style import Params, Style
from segue.v1 import common_pb2, mixer_pb2, mixer_pb2_grpc
from segue.v1.mixer_pb2 import TransitionStyle
from services.matcher.servicer import MatcherServicer

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow

STYLE = TransitionStyle(bars=4, eq_bass_swap=True)
ENTRIES_S = (0.0, 2.0, 1.5)
EXITS_S = (0.0, 29.0, 0.0)
# Fields of the JSON sheet that time the render itself, so differ from run to run.
TIMING = ("render_s", "speed_x_realtime")


@pytest.fixture(scope="module")
def songs(music_tracks: list[Path]) -> list[RealSong]:
    return [real_song(music_tracks[i]) for i in MIX_TRACKS]


@pytest.fixture(scope="module")
def matcher(
    songs: list[RealSong], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadServer[MatcherServicer]]:
    server = matcher_with(songs, tmp_path_factory.mktemp("matcher"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mixer(matcher: ThreadServer[MatcherServicer]) -> Iterator[MixerThreadServer]:
    server = mixer_asking(matcher.address, max_concurrent=4)
    yield server
    server.stop()


def by_id(songs: list[RealSong]) -> list[MixSong]:
    """The songs as files with ids and no analyses: the mixer asks the matcher for them."""
    return [
        MixSong.from_file(
            s.path, song_id=s.song_id, title=s.title, entry_s=ENTRIES_S[i], exit_s=EXITS_S[i]
        )
        for i, s in enumerate(songs)
    ]


def render_mix(address: str, mix_songs: list[MixSong], **kwargs: Any) -> RenderedMix:
    async def run() -> RenderedMix:
        async with MixerClient(address) as client:
            return await client.render_mix(mix_songs, **kwargs)

    return asyncio.run(run())


def render_pair(address: str, outgoing: Excerpt, incoming: Excerpt, **kwargs: Any) -> MixResult:
    async def run() -> MixResult:
        async with MixerClient(address) as client:
            return await client.render_transition(outgoing, incoming, **kwargs)

    return asyncio.run(run())


def expect_status(code: grpc.StatusCode, match: str, call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        call(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    assert match in (err.value.details() or ""), err.value.details()


@pytest.fixture(scope="module")
def served(mixer: MixerThreadServer, songs: list[RealSong]) -> RenderedMix:
    """The real songs mixed by the service, by song id, as WAV."""
    return render_mix(mixer.address, by_id(songs), style=STYLE, file_name="set.wav", title="set")


@pytest.fixture(scope="module")
def in_process(songs: list[RealSong]) -> ContinuousMix:
    """The same plan rendered in this process, with the analyses the matcher was given."""
    tracks = [
        MixTrack(
            s.audio,
            entry_s=ENTRIES_S[i],
            exit_s=EXITS_S[i],
            title=s.title,
            song_id=s.song_id,
            uri=str(s.path),
            analysis=s.analysis,
        )
        for i, s in enumerate(songs)
    ]
    return render_continuous_mix(tracks, Style.from_proto(STYLE), Params())


def without_timing(sheet: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sheet)
    return {k: v for k, v in data.items() if k not in TIMING}


def test_a_mix_rendered_by_the_service_equals_the_in_process_render_of_the_same_plan(
    served: RenderedMix, in_process: ContinuousMix
) -> None:
    reports = [t.report.SerializeToString(deterministic=True) for t in served.transitions]
    expected = [t.report.SerializeToString(deterministic=True) for t in in_process.transitions]
    assert reports == expected
    assert served.cue == in_process.cue_sheet("set.wav", "set")
    assert without_timing(served.sheet_json) == without_timing(in_process.to_json_text())
    assert served.audio == encode(np.ascontiguousarray(in_process.audio.T), RATE, "wav")


def test_the_mix_reports_each_transition_between_its_two_songs_and_lists_every_song(
    served: RenderedMix, songs: list[RealSong]
) -> None:
    ids = [s.song_id for s in songs]
    assert [t.number for t in served.transitions] == [1, 2]
    pairs = [(t.outgoing_song_id, t.incoming_song_id) for t in served.transitions]
    assert pairs == list(itertools.pairwise(ids))
    for t in served.transitions:
        assert t.start_s < t.overlap_start_s < t.overlap_end_s < t.end_s <= served.duration_s
        assert t.report.overlap_bars == 4 and t.report.duration_s > 0
    assert re.findall(r'REM SEGUE_SONG_ID "([^"]+)"', served.cue) == ids
    assert [json.loads(served.sheet_json)["songs"][i]["song_id"] for i in range(3)] == ids
    decoded = decode(served.audio, RATE, channels=2)
    assert decoded.shape[0] / RATE == pytest.approx(served.duration_s, abs=0.01)


def test_every_songs_gain_over_the_mix_comes_back_as_the_mix_mask(
    served: RenderedMix, in_process: ContinuousMix
) -> None:
    assert [g.song_index for g in served.gains] == [0, 1, 2]
    for lane, expected in zip(served.gains, in_process.gains, strict=True):
        start = round(lane.start_s * lane.rate_hz)
        gains = np.asarray(lane.gain)
        assert np.all(expected[:start] == 0.0)
        assert np.all(expected[start + gains.size :] == 0.0)
        np.testing.assert_allclose(gains, expected[start : start + gains.size], atol=1e-6)


def placed(t: TransitionSummary) -> tuple[Any, ...]:
    """Where a transition lies in the mix, and its report."""
    return (t.number, t.start_s, t.overlap_start_s, t.overlap_end_s, t.end_s,
            t.incoming_resume_s, t.join_offset_samples, t.report)  # fmt: skip


def test_a_served_mix_rebuilds_into_the_in_process_mix_for_plotting(
    served: RenderedMix, in_process: ContinuousMix
) -> None:
    rebuilt = mix_from_rendered(served)
    assert rebuilt.cues == in_process.cues
    assert [placed(t) for t in rebuilt.transitions] == [placed(t) for t in in_process.transitions]
    np.testing.assert_allclose(rebuilt.gains, in_process.gains, atol=1e-6)
    np.testing.assert_allclose(rebuilt.audio, in_process.audio, atol=1.5 / 32768)  # 16-bit WAV
    assert rebuilt.loudness_lufs == in_process.loudness_lufs


@pytest.fixture(scope="module")
def claimed(matcher: ThreadServer[MatcherServicer]) -> str:
    """A stored song whose beats are 5% faster than its audio's: a fresh analysis would
    hear 124 BPM, the stored one says 130.2."""
    claimed = analysis_of(song(21, 124.0, 14.0))
    claimed.song_id = "claims-130-bpm"
    for beat in claimed.beats:
        beat.time_s /= 1.05
    claimed.tempo.bpm = 124.0 * 1.05
    store(matcher, claimed)
    return claimed.song_id


def test_a_song_id_without_analysis_takes_the_stored_beats_not_a_new_analysis(
    mixer: MixerThreadServer, claimed: str
) -> None:
    a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
    outgoing = Excerpt.from_array(a.audio, RATE, song_id=claimed)
    incoming = Excerpt.from_array(b.audio, RATE, analysis_of(b))
    report = render_pair(
        mixer.address, outgoing, incoming, style=TransitionStyle(bars=2), context_s=1.0
    ).report
    assert report.tempo_a_bpm == pytest.approx(124.0 * 1.05, rel=2e-3)

    mixed = render_mix(
        mixer.address,
        [
            MixSong.from_array(a.audio, RATE, song_id=claimed),
            MixSong.from_array(b.audio, RATE, analysis=analysis_of(b)),
        ],
        style=TransitionStyle(bars=2),
    )
    assert mixed.transitions[0].report.tempo_a_bpm == pytest.approx(124.0 * 1.05, rel=2e-3)
    assert json.loads(mixed.sheet_json)["songs"][0]["tempo_bpm"] == pytest.approx(
        124.0 * 1.05, rel=2e-3
    )


def test_an_excerpt_cut_from_a_stored_song_gets_the_stored_beats_from_where_it_starts(
    mixer: MixerThreadServer, matcher: ThreadServer[MatcherServicer]
) -> None:
    # The stored song speeds up from 120 to 130 BPM at 15 s.
    stored = common_pb2.SongAnalysis(song_id="speeds-up-at-15-s", duration_s=30.0)
    for t in [*np.arange(0.25, 15.0, 60 / 120), *np.arange(15.0, 30.0, 60 / 130)]:
        stored.beats.add(time_s=float(t), position_in_bar=len(stored.beats) % 4 + 1)
    store(matcher, stored)
    a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
    outgoing = Excerpt.from_array(a.audio, RATE, analysis_of(a))

    def incoming_bpm(song_start_s: float) -> float:
        incoming = Excerpt.from_array(
            b.audio, RATE, song_id=stored.song_id, song_start_s=song_start_s
        )
        result = render_pair(
            mixer.address, outgoing, incoming, style=TransitionStyle(bars=2), context_s=1.0
        )
        return result.report.tempo_b_bpm

    assert incoming_bpm(15.0) == pytest.approx(130.0, rel=2e-3)
    assert incoming_bpm(0.0) == pytest.approx(120.0, rel=2e-3)


def test_a_client_analysis_wins_over_the_stored_one(mixer: MixerThreadServer, claimed: str) -> None:
    a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
    outgoing = Excerpt.from_array(a.audio, RATE, analysis_of(a), song_id=claimed)
    incoming = Excerpt.from_array(b.audio, RATE, analysis_of(b))
    report = render_pair(
        mixer.address, outgoing, incoming, style=TransitionStyle(bars=2), context_s=1.0
    ).report
    assert report.tempo_a_bpm == pytest.approx(124.0, rel=2e-3)


def test_a_song_id_on_a_mixer_without_a_matcher_is_failed_precondition_naming_the_setting() -> None:
    server = MixerThreadServer().start()
    try:
        a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
        expect_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "incoming.song_id",
            render_pair,
            server.address,
            Excerpt.from_array(a.audio, RATE, analysis_of(a)),
            Excerpt.from_array(b.audio, RATE, song_id="some-song"),
        )
        expect_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "SEGUE_MIXER_MATCHER_ADDR",
            render_mix,
            server.address,
            [
                MixSong.from_array(a.audio, RATE, analysis=analysis_of(a)),
                MixSong.from_array(b.audio, RATE, song_id="some-song"),
            ],
        )
    finally:
        server.stop()


def test_a_song_id_the_matcher_does_not_store_is_not_found_naming_the_field(
    mixer: MixerThreadServer,
) -> None:
    a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        "songs[1].song_id 'no-such-song'",
        render_mix,
        mixer.address,
        [
            MixSong.from_array(a.audio, RATE, analysis=analysis_of(a)),
            MixSong.from_array(b.audio, RATE, song_id="no-such-song"),
        ],
    )
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        "outgoing.song_id 'no-such-song'",
        render_pair,
        mixer.address,
        Excerpt.from_array(a.audio, RATE, song_id="no-such-song"),
        Excerpt.from_array(b.audio, RATE, analysis_of(b)),
    )


def test_an_unreachable_matcher_is_unavailable() -> None:
    server = mixer_asking(f"127.0.0.1:{free_port()}", matcher_timeout_s=2.0)
    try:
        a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
        expect_status(
            grpc.StatusCode.UNAVAILABLE,
            "outgoing.song_id",
            render_pair,
            server.address,
            Excerpt.from_array(a.audio, RATE, song_id="any-song"),
            Excerpt.from_array(b.audio, RATE, analysis_of(b)),
        )
    finally:
        server.stop()


def short_songs(count: int = 2) -> list[MixSong]:
    """Generated songs with their analyses: nothing to fetch, quick to render."""
    made = [song(21, 124.0, 14.0), song(22, 120.0, 14.0), song(24, 122.0, 14.0)][:count]
    return [
        MixSong.from_array(s.audio, RATE, song_id=f"short-{i}", analysis=analysis_of(s))
        for i, s in enumerate(made)
    ]


def changed(index: int, **fields: Any) -> Callable[[], list[MixSong]]:
    """Two short songs, the one at `index` with `fields` replaced (built when called)."""
    return lambda: [replace(s, **fields) if i == index else s for i, s in enumerate(short_songs())]


@pytest.mark.parametrize(
    ("make_songs", "kwargs", "match"),
    [
        (lambda: short_songs(1), {}, "songs: a mix needs at least 2 songs, got 1"),
        (changed(1, entry_s=-1.0), {}, "songs[1].entry_s must be"),
        (changed(1, entry_s=5.0, exit_s=6.0), {}, "songs[1].exit_s"),
        (changed(1, entry_s=13.0), {}, "songs[1].entry_s (13.00 s) leaves under 2 s"),
        (changed(0, title="two\nlines"), {}, "songs[0].title"),
        (
            changed(1, audio=b"not audio" * 100, pcm_format=None),
            {},
            "songs[1] excerpt: undecodable audio",
        ),
        (short_songs, {"style": TransitionStyle(bars=99)}, "style.bars must be 1 to 64"),
        (short_songs, {"target_loudness_lufs": 3.0}, "target_loudness_lufs"),
        (short_songs, {"title": "a\rb"}, "title must not contain control characters"),
    ],
)
def test_malformed_mixes_are_invalid_argument_naming_the_field(
    mixer: MixerThreadServer,
    make_songs: Callable[[], list[MixSong]],
    kwargs: dict[str, Any],
    match: str,
) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, match, render_mix, mixer.address, make_songs(), **kwargs
    )


def raw_mix(address: str, requests: list[mixer_pb2.RenderMixRequest]) -> None:
    """Sends a hand-made RenderMix stream and reads the answer."""

    async def run() -> None:
        async def stream() -> Any:
            for request in requests:
                yield request

        async with grpc.aio.insecure_channel(address) as channel:
            async for _ in mixer_pb2_grpc.MixerStub(channel).RenderMix(stream()):
                pass

    asyncio.run(run())


def test_a_chunk_for_a_song_the_config_does_not_list_is_invalid_argument(
    mixer: MixerThreadServer,
) -> None:
    config = mixer_pb2.MixConfig(songs=[s.info() for s in short_songs()])
    requests = [
        mixer_pb2.RenderMixRequest(config=config),
        mixer_pb2.RenderMixRequest(chunk=mixer_pb2.MixChunk(song_index=5, data=b"\0" * 8)),
        mixer_pb2.RenderMixRequest(end=mixer_pb2.EndOfInput()),
    ]
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, "chunk.song_index 5", raw_mix, mixer.address, requests
    )
    expect_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "the first message must be config",
        raw_mix,
        mixer.address,
        requests[1:],
    )


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        ({"max_mix_songs": 2}, "over this mixer's limit of 2 per mix"),
        ({"max_mix_bytes": 3 * 14 * RATE * 4 - 1}, "over the size limit"),
        ({"max_mix_s": 30.0}, "over this mixer's limit of 30 s per mix"),
    ],
)
def test_a_mix_over_the_mixers_limits_is_resource_exhausted(
    limits: dict[str, Any], match: str
) -> None:
    server = MixerThreadServer(**limits).start()
    try:
        expect_status(
            grpc.StatusCode.RESOURCE_EXHAUSTED, match, render_mix, server.address, short_songs(3)
        )
    finally:
        server.stop()


def test_a_bad_mix_alongside_a_good_one_leaves_the_good_one_intact(
    mixer: MixerThreadServer, songs: list[RealSong], served: RenderedMix
) -> None:
    bad = changed(1, audio=b"not audio" * 1000, pcm_format=None)()

    async def both() -> tuple[RenderedMix | BaseException, ...]:
        async with MixerClient(mixer.address) as client:
            return tuple(
                await asyncio.gather(
                    client.render_mix(by_id(songs), style=STYLE, file_name="set.wav", title="set"),
                    client.render_mix(bad),
                    return_exceptions=True,
                )
            )

    good, failed = asyncio.run(both())
    assert isinstance(failed, grpc.aio.AioRpcError)
    assert failed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(good, RenderedMix)
    assert good.audio == served.audio and good.cue == served.cue
    assert [t.report for t in good.transitions] == [t.report for t in served.transitions]


def test_a_mix_of_pcm_songs_at_different_rates_is_rendered_at_the_output_rate(
    mixer: MixerThreadServer,
) -> None:
    a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
    mixed = render_mix(
        mixer.address,
        [
            MixSong.from_array(a.audio, RATE, analysis=analysis_of(a)),
            MixSong.from_array(b.audio[::2].copy(), RATE // 2, analysis=analysis_of(b)),
        ],
        style=TransitionStyle(bars=2),
        output_format="flac",
        output_sample_rate_hz=48000,
    )
    assert mixed.sample_rate_hz == 48000 and mixed.output_format == "flac"
    decoded = decode(mixed.audio, 48000, channels=2)
    assert decoded.shape[0] / 48000 == pytest.approx(mixed.duration_s, abs=0.01)
    assert 'FILE "mix.flac" WAVE' in mixed.cue
