"""Real songs stored in a real matcher (edge engine), and a mixer that asks it for analyses.

Shared by the RenderMix and `segue mix` tests: both need the same songs as files (their paths
are the matcher's uris), as decoded audio, and with the analysis the embedder would send.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matcher_fixtures import edge_store, make_song
from mixer_fixtures import RATE, MixerThreadServer
from thread_server import ThreadServer

from segue.audio import decode
from segue.mixing import beatgrid
from segue.v1 import common_pb2, matcher_pb2
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register

FloatArray = npt.NDArray[np.float32]

# Real tracks of the packaged music (indexes into the sorted list) that make a short mix.
MIX_TRACKS = (3, 6, 14)


@dataclass(frozen=True)
class RealSong:
    """A packaged song: its file, stereo audio [2, frames] at RATE, and its analysis."""

    path: Path
    song_id: str
    title: str
    audio: FloatArray
    analysis: common_pb2.SongAnalysis

    @property
    def duration_s(self) -> float:
        return float(self.audio.shape[1]) / RATE


def real_song(path: Path) -> RealSong:
    """Decodes a track and makes the structure analysis the embedder makes (song seconds)."""
    audio = np.ascontiguousarray(decode(path, RATE, channels=2).T, dtype=np.float32)
    analysis = beatgrid.analyse(audio.mean(axis=0, dtype=np.float32), RATE)
    analysis.song_id = path.stem
    return RealSong(path, path.stem, path.stem.replace("_", " "), audio, analysis)


def storable(song: RealSong, seed: int) -> common_pb2.SongAnalysis:
    """The song's analysis with the feel and segment vectors the matcher needs to store it."""
    rng = np.random.default_rng(seed)
    vectors = make_song(song.song_id, rng, segments=4, segment_s=song.duration_s / 4)
    stored = common_pb2.SongAnalysis()
    stored.CopyFrom(song.analysis)
    stored.model_name, stored.model_version = vectors.model_name, vectors.model_version
    stored.duration_s = song.duration_s
    stored.feel.extend(vectors.feel)
    stored.segments.extend(vectors.segments)
    return stored


def matcher_with(songs: list[RealSong], folder: Path) -> ThreadServer[MatcherServicer]:
    """A real matcher on loopback (edge engine under `folder`) storing `songs` with their
    analyses, titles and file paths."""
    library = SongLibrary(edge_store(folder / "edge"))
    for i, song in enumerate(songs):
        metadata = matcher_pb2.SongMetadata(title=song.title, uri=str(song.path))
        library.upsert(storable(song, i), metadata)
    return ThreadServer("matcher", lambda: MatcherServicer(library), register).start()


def store(server: ThreadServer[MatcherServicer], analysis: common_pb2.SongAnalysis) -> None:
    """Stores one more song (any analysis; vectors are added) in a running matcher."""
    rng = np.random.default_rng(len(analysis.song_id))
    vectors = make_song(analysis.song_id, rng, segments=2, segment_s=5.0)
    stored = common_pb2.SongAnalysis()
    stored.CopyFrom(analysis)
    del stored.feel[:], stored.segments[:]
    stored.feel.extend(vectors.feel)
    stored.segments.extend(vectors.segments)
    assert server.servicer is not None
    server.servicer.library.upsert(stored, matcher_pb2.SongMetadata(title=analysis.song_id))


def mixer_asking(matcher_address: str, **overrides: object) -> MixerThreadServer:
    """A mixer whose SEGUE_MIXER_MATCHER_ADDR is `matcher_address`."""
    return MixerThreadServer(matcher_addr=matcher_address, **overrides).start()
