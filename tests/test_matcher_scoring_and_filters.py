"""Score components, filter validation and translation, and clustering, without a server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matcher_fixtures import make_library, metadata_for, open_store

from segue.v1 import matcher_pb2
from services.matcher import scoring
from services.matcher.clustering import cluster
from services.matcher.conditions import (
    AnyOf,
    Condition,
    Match,
    MatchAny,
    Not,
    Range,
    all_of,
    matches,
)
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter
from services.matcher.library import SongLibrary


def test_tempo_scores_one_at_equal_half_and_double_time_and_a_half_at_six_percent() -> None:
    got = scoring.tempo_component(120.0, np.array([120.0, 60.0, 240.0, 127.2, 150.0, np.nan]))
    assert got[:3] == pytest.approx([1.0, 1.0, 1.0])
    assert got[3] == pytest.approx(0.5, abs=0.01)
    assert got[4] < 0.01
    assert got[5] == scoring.NEUTRAL


def test_key_scores_same_key_neighbours_and_unrelated_keys() -> None:
    got = scoring.key_component("8B", ["8B", "9B", "7B", "8A", "2A", None])
    assert list(got) == [1.0, 0.8, 0.8, 0.8, 0.0, scoring.NEUTRAL]


def test_unset_weights_take_the_documented_defaults_and_negative_ones_are_invalid() -> None:
    weights = scoring.Weights.from_proto(matcher_pb2.ScoreWeights(tempo=0.0))
    assert (weights.transition, weights.feel, weights.tempo) == (0.6, 0.2, 0.0)
    with pytest.raises(InvalidArgumentError, match=r"weights\.key"):
        scoring.Weights.from_proto(matcher_pb2.ScoreWeights(key=-1.0))


def test_tempo_compatible_needs_a_known_source_tempo() -> None:
    with pytest.raises(InvalidArgumentError, match="tempo_compatible"):
        build_filter(matcher_pb2.Filter(tempo_compatible=True), source_tempo_bpm=None)


@pytest.mark.parametrize(
    "condition",
    [
        matcher_pb2.PayloadCondition(field="colour", equals="red"),
        matcher_pb2.PayloadCondition(field="tempo_bpm", equals="120"),
        matcher_pb2.PayloadCondition(field="artist", range=matcher_pb2.NumericRange(gte=1)),
        matcher_pb2.PayloadCondition(field="energy", range=matcher_pb2.NumericRange(gte=1, lte=0)),
        matcher_pb2.PayloadCondition(field="camelot", equals="13C"),
        matcher_pb2.PayloadCondition(field="genre"),
    ],
    ids=[
        "unknown field",
        "equals on number",
        "range on keyword",
        "empty range",
        "bad key",
        "no match",
    ],
)
def test_malformed_conditions_are_invalid(condition: matcher_pb2.PayloadCondition) -> None:
    with pytest.raises(InvalidArgumentError, match=r"conditions\[0\]"):
        build_filter(matcher_pb2.Filter(conditions=[condition]))


def test_an_artist_both_required_and_excluded_is_contradictory() -> None:
    spec = matcher_pb2.Filter(
        exclude_artists=["A"], conditions=[matcher_pb2.PayloadCondition(field="artist", equals="A")]
    )
    with pytest.raises(InvalidArgumentError, match="exclude_artists"):
        build_filter(spec)


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_both_stores_select_exactly_the_points_a_condition_describes(
    backend: str, tmp_path: Path
) -> None:
    store = open_store(backend, tmp_path)
    library = SongLibrary(store)
    for i, song in enumerate(make_library(12, seed=5)):
        library.upsert(song, metadata_for(i))
    everything = store.scroll(None)
    cases: list[Condition] = [
        Match("artist", "artist-2"),
        Not(MatchAny("artist", ("artist-1", "artist-3"))),
        all_of(Match("kind", "segment"), Range("tempo_bpm", gte=100, lte=125)),
        AnyOf((Range("energy", lte=0.3), Match("extra.mood", "calm"))),
        all_of(Match("segment_index", 3), Not(Match("section_letter", "A"))),
    ]
    try:
        for condition in cases:
            want = {r.id for r in everything if matches(condition, r.payload)}
            got = {r.id for r in store.scroll(condition)}
            assert got == want, condition
            assert want  # each case selects something, so it can fail
    finally:
        store.close()


def test_clustering_recovers_planted_groups_and_picks_their_number() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    feels = np.concatenate([c + 0.15 * rng.normal(size=(25, 16)) for c in centres])
    result = cluster(feels, 0, seed=1)
    assert len(result.centroids) == 4
    for group in range(4):
        assert len(set(result.labels[group * 25 : (group + 1) * 25])) == 1
    assert result.silhouette > 0.5


def test_asking_for_more_clusters_than_songs_is_invalid() -> None:
    with pytest.raises(InvalidArgumentError, match="num_clusters"):
        cluster(np.eye(3), 5, seed=0)
