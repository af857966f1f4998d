"""Typed Python clients for the Segue services.

    from segue.client import EmbedderClient

    async with EmbedderClient("127.0.0.1:50051") as embedder:
        analysis = await embedder.analyze_file("song.mp3", song_id="song-1")
"""
