"""Every RPC of every service needs a scope, and the scopes are the ones the issue names."""

from __future__ import annotations

from segue.security.scopes import METHOD_SCOPES
from segue.v1 import embedder_pb2, matcher_pb2, mixer_pb2


def _declared_methods() -> set[str]:
    methods = set()
    for module in (embedder_pb2, matcher_pb2, mixer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return methods


def test_every_declared_rpc_has_a_scope_and_no_scope_names_a_missing_rpc() -> None:
    assert set(METHOD_SCOPES) == _declared_methods()


def test_scopes_separate_reading_analysing_writing_and_rendering() -> None:
    by_scope: dict[str, set[str]] = {}
    for method, scope in METHOD_SCOPES.items():
        by_scope.setdefault(scope, set()).add(method.rsplit("/", 1)[1])
    assert by_scope == {
        "read": {"ModelInfo", "GetSong", "ListSongs", "NextSegment", "SimilarSongs",
                 "PlanPlaylist", "Cluster"},
        "analyze": {"Analyze", "EmbedClip"},
        "write": {"UpsertSong", "DeleteSong"},
        "render": {"RenderTransition", "RenderMashup", "RenderMix"},
    }
