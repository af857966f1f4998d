"""ListSongs: stored songs a page at a time, in song id order.

A page token marks a position in song id order and nothing else: it is the last song id a
page covered, as unpadded URL-safe base64 behind a version byte. Only tokens this module
would issue are accepted, so a client cannot pass anything else for one. Pages are cut short
of MAX_PAGE_BYTES (metadata can make songs large), so a full page always fits in a message.
"""

from __future__ import annotations

import base64

from segue.v1 import matcher_pb2
from services.matcher import payload as pl
from services.matcher import schema
from services.matcher.conditions import Condition
from services.matcher.errors import InvalidArgumentError
from services.matcher.filters import build_filter, check_filter_size
from services.matcher.library import SongLibrary, SongRecord
from services.matcher.validation import MAX_TEXT_LENGTH, check_song_id

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1_000
# Serialised songs per page at most, unless the page's first song alone is larger (a
# song's metadata alone can approach 1 MiB; the default message limit is 4 MiB).
MAX_PAGE_BYTES = 1024 * 1024
# Longest page token accepted (a song id's token is at most about 2,750 characters).
MAX_TOKEN_LENGTH = MAX_TEXT_LENGTH
_TOKEN_VERSION = b"\x01"
# Song-point fields a listed song shows.
LISTED_FIELDS = ("duration_s", "model_version", *schema.SHOWN_IN_RESULTS)


def check_page_size(page_size: int) -> int:
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    if page_size > MAX_PAGE_SIZE:
        raise InvalidArgumentError(
            "page_size", f"must be 1 to {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE}), got {page_size}"
        )
    return page_size


def page_token(song_id: str) -> str:
    """The token of the position after `song_id`."""
    raw = base64.urlsafe_b64encode(_TOKEN_VERSION + song_id.encode())
    return raw.rstrip(b"=").decode("ascii")


def position_of(token: str) -> str:
    """The song id a token marks ("" for no token: the start); INVALID_ARGUMENT naming
    page_token for anything `page_token` would not have made."""
    if not token:
        return ""
    refused = InvalidArgumentError("page_token", "is not a next_page_token of ListSongs")
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        song_id = raw.removeprefix(_TOKEN_VERSION).decode()
    except ValueError:  # not base64, or not UTF-8
        raise refused from None
    if not raw.startswith(_TOKEN_VERSION) or page_token(song_id) != token:
        raise refused
    try:
        check_song_id(song_id, "page_token")
    except InvalidArgumentError:
        raise refused from None
    return song_id


def song_filter(spec: matcher_pb2.Filter) -> Condition | None:
    """The request's filter over song points: there is no song being left to be compatible
    with, and no segment to hold a segment field."""
    check_filter_size(spec)
    for name in ("tempo_compatible", "key_compatible"):
        if getattr(spec, name):
            raise InvalidArgumentError(f"filter.{name}", "needs a song to compare with")
    for i, condition in enumerate(spec.conditions):
        if condition.field in schema.FILTERABLE_ON_SEGMENTS_ONLY:
            raise InvalidArgumentError(
                f"filter.conditions[{i}].field", f"{condition.field!r} applies to segments only"
            )
    return build_filter(spec)


def stored_song(song: SongRecord) -> matcher_pb2.StoredSong:
    """A listed song: GetSong's StoredSong without segments and analysis."""
    out = matcher_pb2.StoredSong(
        song_id=song.song_id,
        duration_s=float(song.payload.get("duration_s", 0.0)),
        model_version=str(song.payload.get("model_version", "")),
        feel=song.feel or (),
    )
    pl.show_song(song.payload, out)
    return out


def list_songs(
    library: SongLibrary, request: matcher_pb2.ListSongsRequest
) -> matcher_pb2.ListSongsResponse:
    limit = check_page_size(request.page_size)
    after = position_of(request.page_token)
    where = song_filter(request.filter)
    page = library.list_songs(
        after, limit, where, fields=LISTED_FIELDS, with_feel=request.with_vectors
    )
    response = matcher_pb2.ListSongsResponse()
    size = 0
    for song in page.songs:
        out = stored_song(song)
        size += out.ByteSize()
        if response.songs and size > MAX_PAGE_BYTES:
            response.next_page_token = page_token(response.songs[-1].song_id)
            return response
        response.songs.append(out)
    if page.more:
        response.next_page_token = page_token(page.last_id)
    return response
