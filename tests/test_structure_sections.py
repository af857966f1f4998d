"""Section boundaries on splice composites of real recordings and on generated songs."""

import mir_eval
import numpy as np
import pytest
from immich_memories_music import tracks_dir

from devkit.splice import load_mono, splice
from devkit.synth import generate_song
from segue.structure import analyze_audio
from segue.structure.sections import BlockFeatures, fused_similarity, segment

TRACKS = (
    "happy/happy_electronic_s411.opus",
    "calm/calm_acoustic_1.opus",
    "energetic/energetic_electronic_2.opus",
    "tender/tender_acoustic_2.opus",
    "nostalgic/nostalgic_electronic_s522.opus",
)


def _hit_rate(reference: np.ndarray, estimated: list[float], duration: float) -> float:
    ref = np.c_[reference[:-1], reference[1:]]
    edges = np.asarray([0.0, *estimated, duration])
    est = np.c_[edges[:-1], edges[1:]]
    return float(mir_eval.segment.detection(ref, est, window=3.0, trim=True)[2])


@pytest.fixture(scope="module")
def recordings() -> list[tuple[str, np.ndarray]]:
    return [(name, load_mono(tracks_dir() / name)) for name in TRACKS]


def test_joins_between_real_recordings_are_found(recordings: list[tuple[str, np.ndarray]]) -> None:
    composite = splice(recordings, [14.0, 12.0, 16.0, 12.0, 14.0], np.random.default_rng(7))
    result = analyze_audio(composite.audio, composite.sample_rate_hz)
    found = [s.start_s for s in result.sections[1:]]
    assert _hit_rate(composite.boundaries_s, found, result.duration_s) >= 0.75


def test_sections_of_a_generated_song_are_found_and_repeats_share_letters() -> None:
    song = generate_song(61, duration_s=75, tempo_bpm=128, instrumentation="electronic")
    result = analyze_audio(song.audio, song.sample_rate_hz)
    found = [s.start_s for s in result.sections[1:]]
    assert _hit_rate(song.boundaries_s, found, result.duration_s) >= 0.7
    letters = {round(s.start_s): s.letter.rstrip("'") for s in result.sections}
    choruses = [s.start_s for s in song.sections if s.function == "chorus"]
    chorus_letters = {letters[min(letters, key=lambda t: abs(t - c))] for c in choruses}
    assert len(chorus_letters) == 1


def test_sections_tile_the_song_and_cues_sit_on_downbeats() -> None:
    song = generate_song(62, duration_s=60, tempo_bpm=110, instrumentation="band")
    result = analyze_audio(song.audio, song.sample_rate_hz)
    for a, b in zip(result.sections[:-1], result.sections[1:], strict=True):
        assert a.end_s == b.start_s
    downbeats = np.asarray(result.downbeat_times_s)
    kinds = {c.kind for c in result.cue_points}
    assert kinds == {"entry", "exit"}
    for cue in result.cue_points:
        assert np.min(np.abs(downbeats - cue.time_s)) < 0.01
        assert cue.phrase_bars in (0, 8, 16, 32)


def _blocks(timbre_shift_at: int, loudness: np.ndarray) -> BlockFeatures:
    """One-second blocks whose noisy timbre changes at one block; harmony and groove hold."""
    rng = np.random.default_rng(5)
    n = len(loudness)
    sounds = rng.normal(0.0, 1.0, (2, 13))
    timbre = sounds[(np.arange(n) >= timbre_shift_at).astype(int)] + rng.normal(0.0, 0.5, (n, 13))
    timbre = (timbre - timbre.mean(axis=0)) / timbre.std(axis=0)  # standardised, as pooled
    groups = {
        "chroma": np.tile(rng.normal(0.0, 1.0, 12), (n, 1)),
        "timbre": timbre,
        "loudness": loudness[:, None],
        "rhythm": np.tile(rng.normal(0.0, 1.0, 12), (n, 1)),
    }
    stacked = np.hstack(list(groups.values()))
    return BlockFeatures(np.arange(n, dtype=np.float64), stacked, np.ones(n), groups)


def test_a_change_of_timbre_outweighs_a_swell_in_loudness() -> None:
    swell = np.zeros(60)
    swell[8:20] = np.hanning(12) * 3.0  # louder for a while inside the first section
    bounds, strengths = segment(_blocks(35, swell), 60.0, 1.0, 10)
    assert bounds[int(np.argmax(strengths))] == 35.0
    assert all(s < 0.5 for b, s in zip(bounds, strengths, strict=True) if b != 35.0)
    assert segment(_blocks(35, np.zeros(60)), 60.0, 1.0, 10)[0] == [35.0]


def test_scaling_a_feature_group_does_not_change_the_boundaries() -> None:
    blocks = _blocks(35, np.zeros(60))
    louder = dict(blocks.groups, timbre=blocks.groups["timbre"] * 50.0)
    scaled = BlockFeatures(blocks.starts_s, blocks.features, blocks.energy, louder)
    assert np.allclose(fused_similarity(scaled), fused_similarity(blocks))
    assert segment(scaled, 60.0, 1.0, 10)[0] == segment(blocks, 60.0, 1.0, 10)[0]
