"""The payload schema declared in services/matcher/schema.py is what the matcher writes,
indexes, filters on and copies, on both stores."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from matcher_fixtures import (
    edge_store,
    free_port,
    make_song,
    metadata_for,
    open_store,
    server_store,
)
from matcher_qdrant_standin import QdrantStandIn

from segue.v1 import common_pb2, matcher_pb2
from services.matcher import payload as pl
from services.matcher import schema
from services.matcher.conditions import Match, all_of
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter
from services.matcher.library import SongLibrary
from services.matcher.schema import ValueType
from services.matcher.similar import similar_songs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["edge", "client"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SongLibrary]:
    """A library holding three songs with every metadata field, tempo, key, section letters
    and beats (so that every declared field is written)."""
    store = open_store(request.param, tmp_path)
    lib = SongLibrary(store)
    rng = np.random.default_rng(0)
    for i in range(3):
        song = make_song(f"song-{i}", rng)
        song.beats.extend(common_pb2.Beat(time_s=t, position_in_bar=1) for t in (0.5, 1.0))
        lib.upsert(song, metadata_for(i))
    yield lib
    store.close()


def holds(value_type: ValueType, value: Any) -> bool:
    """A payload value is of the declared type."""
    if value_type is ValueType.KEYWORD:
        return isinstance(value, str)
    if value_type is ValueType.FLOAT:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if value_type is ValueType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if value_type is ValueType.KEYWORD_MAP:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if value_type is ValueType.OBJECT:
        return isinstance(value, dict)
    if value_type is ValueType.LIST:
        return isinstance(value, list)
    return isinstance(value, str) and is_song_analysis(base64.b64decode(value, validate=True))


def is_song_analysis(encoded: bytes) -> bool:
    try:
        return bool(common_pb2.SongAnalysis.FromString(encoded).song_id)
    except DecodeError:
        return False


def test_every_payload_field_written_is_declared_with_its_type_on_the_points_it_names(
    library: SongLibrary,
) -> None:
    seen: dict[str, set[str]] = {pl.SONG: set(), pl.SEGMENT: set()}
    for record in library.store.scroll(None):
        kind = record.payload["kind"]
        for name, value in record.payload.items():
            field = schema.BY_NAME.get(name)
            assert field is not None, f"{name} is written but not declared"
            assert field.on_songs if kind == pl.SONG else field.on_segments, (kind, name)
            assert holds(field.type, value), (name, value)
            seen[kind].add(name)
    # Nothing declared is left unwritten: the declaration is not stale.
    assert seen[pl.SONG] == {f.name for f in schema.FIELDS if f.on_songs}
    assert seen[pl.SEGMENT] == {f.name for f in schema.FIELDS if f.on_segments}


def test_committed_segments_carry_their_songs_values_of_the_copied_fields(
    library: SongLibrary,
) -> None:
    song = library.song("song-1").payload
    where = all_of(Match("song_id", "song-1"), Match("kind", pl.SEGMENT))
    segments = [r.payload for r in library.store.scroll(where)]
    assert segments
    for segment in segments:
        assert {name: segment[name] for name in schema.COPIED_TO_SEGMENTS} == {
            name: song[name] for name in schema.COPIED_TO_SEGMENTS
        }


def test_the_embedded_store_indexes_exactly_the_declared_fields_with_their_types(
    tmp_path: Path,
) -> None:
    store = edge_store(tmp_path / "edge")
    try:
        store.ensure_ready()
        assert store.payload_indexes() == dict(schema.PAYLOAD_INDEXES)
    finally:
        store.close()


def test_a_qdrant_server_is_asked_once_for_exactly_the_declared_indexes() -> None:
    qdrant = QdrantStandIn(free_port()).start()
    try:
        first = server_store(qdrant)
        first.ensure_ready()
        assert first.payload_indexes() == dict(schema.PAYLOAD_INDEXES)
        asked = sorted(qdrant.indexes.requests)
        assert asked == sorted((n, t.value.capitalize()) for n, t in schema.PAYLOAD_INDEXES)
        first.close()
        restarted = server_store(qdrant)  # a matcher restarting on the same collection
        restarted.ensure_ready()
        assert sorted(qdrant.indexes.requests) == asked
        restarted.close()
    finally:
        qdrant.close()


def condition_on(field: schema.PayloadField) -> matcher_pb2.PayloadCondition:
    """A well-formed condition on a field for its type."""
    if field.type.numeric:
        return matcher_pb2.PayloadCondition(
            field=field.name, range=matcher_pb2.NumericRange(gte=0.0)
        )
    name = f"{field.name}.mood" if field.type is ValueType.KEYWORD_MAP else field.name
    return matcher_pb2.PayloadCondition(field=name, equals="8B")


@pytest.mark.parametrize("field", schema.FIELDS, ids=[f.name for f in schema.FIELDS])
def test_filters_accept_exactly_the_fields_declared_filterable(
    field: schema.PayloadField,
) -> None:
    spec = matcher_pb2.Filter(conditions=[condition_on(field)])
    if field.filterable:
        assert build_filter(spec) is not None
    else:
        with pytest.raises(InvalidArgumentError, match=r"conditions\[0\]\.field"):
            build_filter(spec)


@pytest.mark.parametrize("name", ["extra.", "extra", "colour", "key.name", "kind.x"])
def test_a_filter_on_an_undeclared_name_or_a_map_without_a_key_is_invalid(name: str) -> None:
    spec = matcher_pb2.Filter(conditions=[matcher_pb2.PayloadCondition(field=name, equals="x")])
    with pytest.raises(InvalidArgumentError, match=r"conditions\[0\]\.field"):
        build_filter(spec)


def test_the_payload_condition_documentation_names_exactly_the_filterable_fields() -> None:
    proto = (REPO / "proto" / "segue" / "v1" / "matcher.proto").read_text()
    comment = proto[: proto.index("message PayloadCondition")].rsplit("\n\n", 1)[-1]
    documented = set(re.findall(r'"([a-z_.<>]+)"', comment))
    assert documented == set(schema.filterable_names())


@pytest.mark.parametrize("name", sorted(schema.FILTERABLE_ON_SEGMENTS_ONLY))
def test_similar_songs_refuses_filters_on_fields_only_segments_carry(
    library: SongLibrary, name: str
) -> None:
    request = matcher_pb2.SimilarSongsRequest(
        song_id="song-0",
        filter=matcher_pb2.Filter(
            conditions=[matcher_pb2.PayloadCondition(field=name, equals="A")]
        ),
    )
    with pytest.raises(InvalidArgumentError, match="segments only"):
        similar_songs(library, request)
