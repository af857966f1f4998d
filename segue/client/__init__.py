"""Typed Python clients for the Segue services.

    from segue.client import EmbedderClient, MatcherClient, MixerClient

    async with EmbedderClient("127.0.0.1:50051") as embedder:
        result = await embedder.analyze_file("song.mp3", song_id="song-1")
    async with MatcherClient("127.0.0.1:50052") as matcher:
        await matcher.upsert_song(result.analysis)
        best = await matcher.next_segment("song-1", k=5)
"""

from segue.client.embedder import AnalyzeResult, EmbedderClient, EmbedderSyncClient
from segue.client.matcher import MatcherClient, make_metadata
from segue.client.mixer import Excerpt, MixerClient, MixResult

__all__ = [
    "AnalyzeResult",
    "EmbedderClient",
    "EmbedderSyncClient",
    "Excerpt",
    "MatcherClient",
    "MixResult",
    "MixerClient",
    "make_metadata",
]
