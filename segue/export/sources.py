"""Where exported songs come from: a folder of analysis JSON files, or the matcher's library.

A folder holds what `segue analyze --out-dir DIR` writes: one `<song id>.json` per song, the
protobuf JSON of a `segue.v1.SongAnalysis` with one more key, "file", the path of the audio it
was made from (a JSON list of such objects, as `segue analyze -o` writes for several files, is
read too). A relative "file" is taken from the working directory, as `segue analyze` was given
it. The matcher returns `StoredSong.analysis` (the whole analysis given to UpsertSong)
and the song's path as `SongMetadata.uri`; a matcher older than that field returns only the
song's duration, tempo, key and segments, which export without a grid or cues, saying why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import ParseDict, ParseError

from segue.client.errors import NotFoundError
from segue.client.matcher import MatcherClient
from segue.export.files import ExportError
from segue.v1 import common_pb2, matcher_pb2


@dataclass(frozen=True)
class SongSource:
    analysis: common_pb2.SongAnalysis
    metadata: matcher_pb2.SongMetadata  # uri: where the audio file is


def load_folder(folder: Path, song_ids: Sequence[str] = ()) -> list[SongSource]:
    """The analyses in `folder`, sorted by song id, or those of `song_ids` in that order.

    ExportError when the folder is missing, holds no analyses, holds a JSON file that does not
    parse, an analysis without its "file", two analyses of one song, or lacks a song asked for.
    """
    if not folder.is_dir():
        raise ExportError(f"no such folder: {folder}")
    found: dict[str, SongSource] = {}
    for path in sorted(folder.glob("*.json")):
        for item in _json_items(path):
            source = _source(path, item)
            if source is None:
                continue
            song_id = source.analysis.song_id
            if song_id in found:
                raise ExportError(f"{path}: song {song_id!r} is analysed twice in {folder}")
            found[song_id] = source
    if not found:
        raise ExportError(
            f"no analyses in {folder}: expected <song id>.json files from `segue analyze --out-dir`"
        )
    if not song_ids:
        return [found[k] for k in sorted(found)]
    missing = [s for s in song_ids if s not in found]
    if missing:
        raise ExportError(f"unknown song id {missing[0]!r}: no analysis of it in {folder}")
    return [found[s] for s in song_ids]


def _json_items(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ExportError(f"{path}: not readable JSON ({e})") from e
    return data if isinstance(data, list) else [data]


def _source(path: Path, item: Any) -> SongSource | None:
    """The song in one JSON object; None for JSON that is not an analysis (no song_id)."""
    if not isinstance(item, dict) or not item.get("song_id"):
        return None
    fields = {k: v for k, v in item.items() if k != "file"}
    try:
        analysis = ParseDict(fields, common_pb2.SongAnalysis(), ignore_unknown_fields=True)
    except ParseError as e:
        raise ExportError(f"{path}: not a Segue analysis ({e})") from e
    location = item.get("file")
    if not isinstance(location, str) or not location:
        raise ExportError(
            f"{path}: the analysis of {analysis.song_id!r} does not say which file it was "
            'made from (its "file" key); analyse it again with `segue analyze --out-dir`'
        )
    stem = Path(location).stem
    return SongSource(analysis, matcher_pb2.SongMetadata(title=stem, uri=location))


async def fetch_from_matcher(matcher: MatcherClient, song_ids: Sequence[str]) -> list[SongSource]:
    """The stored analysis and metadata of each song, in the order given.

    ExportError for a song id the matcher does not store, or a song stored without its path.
    """
    out = []
    for song_id in song_ids:
        try:
            stored = await matcher.get_song(song_id)
        except NotFoundError as e:
            raise ExportError(f"unknown song id {song_id!r}: not in the matcher's library") from e
        if not stored.metadata.uri:
            raise ExportError(
                f"song {song_id!r} is stored without its file path (SongMetadata.uri); "
                "index it again with `segue index`"
            )
        out.append(SongSource(stored_analysis(stored), stored.metadata))
    return out


def stored_analysis(stored: matcher_pb2.StoredSong) -> common_pb2.SongAnalysis:
    """The song's analysis; from the fields older matchers kept when it has none."""
    if stored.HasField("analysis") and stored.analysis.song_id:
        return stored.analysis
    return common_pb2.SongAnalysis(
        song_id=stored.song_id,
        model_version=stored.model_version,
        duration_s=stored.duration_s,
        tempo=common_pb2.Tempo(bpm=stored.tempo_bpm),
        key=stored.key,
        segments=stored.segments,
    )


__all__ = ["SongSource", "fetch_from_matcher", "load_folder", "stored_analysis"]
