"""SimilarSongs: feel nearest neighbours among song points, one result per song."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segue.v1 import matcher_pb2
from services.matcher import payload as pl
from services.matcher import schema
from services.matcher.conditions import Match, Not, all_of
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter, check_filter_size
from services.matcher.library import SongLibrary
from services.matcher.next_segment import check_k
from services.matcher.store import FEEL
from services.matcher.validation import check_vector


@dataclass
class SimilarResult:
    song_id: str
    similarity: float
    payload: dict[str, Any] = field(repr=False)


def similar_songs(
    library: SongLibrary, request: matcher_pb2.SimilarSongsRequest
) -> list[SimilarResult]:
    k = check_k(request.k)
    check_filter_size(request.filter)
    for i, condition in enumerate(request.filter.conditions):
        if condition.field in schema.FILTERABLE_ON_SEGMENTS_ONLY:
            raise InvalidArgumentError(
                f"filter.conditions[{i}].field", f"{condition.field!r} applies to segments only"
            )
    kind = request.WhichOneof("from")
    tempo: float | None = None
    camelot: str | None = None
    song_id: str | None = None
    model_version: str | None = None
    if kind == "song_id":
        song = library.song(request.song_id, with_feel=True)
        if song.feel is None:
            raise InvalidArgumentError("song_id", "the stored song has no feel vector")
        feel = song.feel
        tempo = pl.tempo_from_payload(song.payload)
        camelot = song.payload.get("camelot") or None
        song_id = song.song_id
        model_version = song.payload.get("model_version") or None
    elif kind == "feel":
        feel = list(request.feel.values)
        check_vector(feel, library.store.dims.feel, "feel.values")
    else:
        raise InvalidArgumentError("from", "set song_id or feel")
    user = build_filter(request.filter, source_tempo_bpm=tempo, source_camelot=camelot)
    where = all_of(
        Match("kind", pl.SONG),
        Not(Match("song_id", song_id)) if song_id else None,
        Match("model_version", model_version) if model_version else None,
        user,
    )
    library.ensure_ready()
    # Results show metadata only: the song points' segments and analysis stay unread.
    hits = library.store.search(
        FEEL, feel, where, k, with_payload=("song_id", *schema.METADATA_FIELDS)
    )
    return [SimilarResult(str(h.payload["song_id"]), h.score, h.payload) for h in hits]
