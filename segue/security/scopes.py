"""The scope each RPC needs, declared once for every service.

A token holds scopes; a call is allowed when the token holds its method's scope (or `*`).
A segue.v1 method missing from this table is refused (PERMISSION_DENIED), so a new RPC cannot
ship unprotected by omission: tests/test_security_scopes.py checks the table against the protos.
"""

from __future__ import annotations

from typing import Final

READ: Final = "read"
ANALYZE: Final = "analyze"
WRITE: Final = "write"
RENDER: Final = "render"
ALL: Final = "*"
SCOPES: Final = frozenset({READ, ANALYZE, WRITE, RENDER, ALL})

METHOD_SCOPES: Final[dict[str, str]] = {
    "/segue.v1.Embedder/ModelInfo": READ,
    "/segue.v1.Embedder/Analyze": ANALYZE,
    "/segue.v1.Embedder/EmbedClip": ANALYZE,
    "/segue.v1.Matcher/GetSong": READ,
    "/segue.v1.Matcher/ListSongs": READ,
    "/segue.v1.Matcher/NextSegment": READ,
    "/segue.v1.Matcher/SimilarSongs": READ,
    "/segue.v1.Matcher/PlanPlaylist": READ,
    "/segue.v1.Matcher/Cluster": READ,
    "/segue.v1.Matcher/UpsertSong": WRITE,
    "/segue.v1.Matcher/DeleteSong": WRITE,
    "/segue.v1.Mixer/RenderTransition": RENDER,
    "/segue.v1.Mixer/RenderMashup": RENDER,
    "/segue.v1.Mixer/RenderMix": RENDER,
}

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES: Final = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
