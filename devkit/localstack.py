"""The services (and optionally Prometheus) as real processes on loopback.

Used by `make demo`, the live observability test and the benchmarks, so all of them run the
stack the way an operator would: `python -m services.<name>` with environment settings.

    with running_stack(workdir, services=("embedder",), replicas={"embedder": 2}) as stack:
        async with EmbedderClient(stack.target("embedder")) as client: ...

Every replica has its own gRPC and metrics port; all of a stack's embedders sign resume tokens
with one `SEGUE_TOKEN_KEY`, so a stream may resume on any of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The default repository root: the checkout holding this devkit/ (services run from there)."""
SERVICES = ("embedder", "matcher", "mixer")
# Relative to the repository root.
PROMETHEUS_CONFIG = Path("deploy/prometheus/prometheus.local.yml")
RULE_FILE = Path("deploy/prometheus/rules/segue.rules.yml")
HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (each held open until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """One free loopback port."""
    return free_ports(1)[0]


@dataclass(frozen=True)
class Replica:
    """One running service process."""

    service: str
    grpc: str  # host:port of its gRPC server
    metrics: str  # host:port of its Prometheus /metrics
    pid: int
    log: Path


@dataclass
class Stack:
    """Addresses of a running stack.

    `grpc` and `metrics` name each service's first replica; `target` reaches all of them.
    """

    grpc: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    prometheus: str = ""
    replicas: dict[str, list[Replica]] = field(default_factory=dict)
    token_key: str = ""
    # With auth=True: a bearer token holding every scope (pass it to clients as `token=`).
    token: str | None = None

    def target(self, service: str) -> str:
        """The gRPC target of every replica of `service`: `host:port` for one, else
        `ipv4:host:p1,host:p2,...`, which the SDK's round_robin spreads calls over."""
        addresses = [r.grpc for r in self.replicas[service]]
        return addresses[0] if len(addresses) == 1 else "ipv4:" + ",".join(addresses)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query against the stack's Prometheus HTTP API."""
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            payload = json.loads(response.read())
        if payload["status"] != "success":
            raise RuntimeError(f"Prometheus query {expr!r} failed: {payload}")
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result


async def wait_serving(address: str, deadline_s: float = 90.0,
                       process: subprocess.Popen[bytes] | None = None) -> None:
    """Waits until a service's gRPC health check answers SERVING (at most `deadline_s`
    seconds); fails at once if `process`, the server, exits meanwhile."""
    end = time.monotonic() + deadline_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server for {address} exited with {process.returncode}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                if time.monotonic() > end:
                    raise
            await asyncio.sleep(0.3)


def _wait_http(url: str, deadline_s: float = 30.0) -> None:
    """Waits until `url` answers (at most `deadline_s` seconds)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


@contextmanager
def _process(args: list[str], log: Path, cwd: Path,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess logging to `log`, terminated (then killed after 30 s) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _replica_counts(services: Sequence[str], replicas: Mapping[str, int] | None
                    ) -> dict[str, int]:
    """How many processes of each service to start (default one each), checked."""
    counts = {name: 1 for name in services}
    for name, count in (replicas or {}).items():
        if name not in counts:
            raise ValueError(f"replicas of {name!r}, which is not started ({services})")
        if count < 1:
            raise ValueError(f"{name}: at least one replica, not {count}")
        counts[name] = count
    unknown = set(counts) - set(SERVICES)
    if unknown:
        raise ValueError(f"no such services: {sorted(unknown)} (known: {SERVICES})")
    if counts.get("matcher", 1) > 1:
        # Each would open the same embedded Qdrant store.
        raise ValueError("the matcher runs once per stack (one embedded Qdrant store)")
    return counts


def _log_path(workdir: Path, service: str, index: int, count: int) -> Path:
    """workdir/logs/<service>.log, or <service>-<i>.log when there are several."""
    return workdir / "logs" / (f"{service}.log" if count == 1 else f"{service}-{index}.log")


def _start_services(stop: ExitStack, stack: Stack, workdir: Path, counts: dict[str, int],
                    base_env: dict[str, str], extra_env: dict[str, str], repo: Path
                    ) -> list[subprocess.Popen[bytes]]:
    """Starts every replica (not waiting for them); returns their processes."""
    procs = []
    for name, count in counts.items():
        stack.replicas[name] = []
        for index in range(count):
            grpc_port, metrics_port = free_ports(2)
            env = {**base_env, "SEGUE_GRPC_PORT": str(grpc_port),
                   "SEGUE_METRICS_PORT": str(metrics_port), **extra_env}
            if (name == "mixer" and "matcher" in stack.replicas
                    and "SEGUE_MIXER_MATCHER_ADDR" not in extra_env):
                # The mixer takes songs' stored analyses from the stack's matcher (started first).
                env["SEGUE_MIXER_MATCHER_ADDR"] = stack.target("matcher")
            log = _log_path(workdir, name, index, count)
            proc = stop.enter_context(
                _process([sys.executable, "-m", f"services.{name}"], log, repo, env))
            procs.append(proc)
            stack.replicas[name].append(Replica(name, f"{HOST}:{grpc_port}",
                                                f"{HOST}:{metrics_port}", proc.pid, log))
        stack.grpc[name] = stack.replicas[name][0].grpc
        stack.metrics[name] = stack.replicas[name][0].metrics
    return procs


async def _wait_all(stack: Stack, procs: list[subprocess.Popen[bytes]],
                    deadline_s: float) -> None:
    replicas = [r for rs in stack.replicas.values() for r in rs]
    await asyncio.gather(*(wait_serving(r.grpc, deadline_s, p)
                           for r, p in zip(replicas, procs, strict=True)))


def _start_prometheus(stop: ExitStack, stack: Stack, workdir: Path, repo: Path) -> None:
    """Prometheus scraping every replica with the project's rules; sets stack.prometheus."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    config = yaml.safe_load((repo / PROMETHEUS_CONFIG).read_text())
    config["rule_files"] = [str(repo / RULE_FILE)]
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"].removeprefix("segue-")
        if name in stack.replicas:
            job["static_configs"] = [{"targets": [r.metrics for r in stack.replicas[name]]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = f"{HOST}:{free_port()}"
    stop.enter_context(_process(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address={web}"],
        workdir / "logs" / "prometheus.log", repo))
    stack.prometheus = f"http://{web}"
    _wait_http(f"{stack.prometheus}/-/ready")


def _security_env(workdir: Path, auth: bool) -> tuple[dict[str, str], str | None]:
    """Environment for the services' authentication, and the clients' token (None: auth off).

    Without auth the services run with SEGUE_INSECURE_DEV=1, the development shortcut; with it
    they read a fresh token file, as in production, and the mixer calls the matcher with the
    token too. Health stays open so readiness can be polled without a token.
    """
    if not auth:
        return {"SEGUE_INSECURE_DEV": "1"}, None
    token = secrets.token_urlsafe(32)
    tokens_file = workdir / "auth-tokens"
    tokens_file.write_text(f"localstack * {token}\n")
    tokens_file.chmod(0o600)
    return {"SEGUE_AUTH_TOKENS_FILE": str(tokens_file), "SEGUE_OPEN_HEALTH": "1",
            "SEGUE_INSECURE_DEV": "0"}, token


@contextmanager
def running_stack(workdir: Path, *, prometheus: bool = False,
                  env: dict[str, str] | None = None,
                  services: Sequence[str] = SERVICES,
                  replicas: Mapping[str, int] | None = None,
                  repo: Path = REPO_ROOT,
                  ready_timeout_s: float = 90.0,
                  auth: bool = False) -> Iterator[Stack]:
    """Starts `services` (and Prometheus scraping them with the project's rules).

    `replicas` sets how many processes of a service run (e.g. `{"embedder": 2}`), each on its
    own gRPC and metrics port. `env` is added to every process's environment (after the ports
    and paths set here, so it may override them). The token key is `env`'s, else the
    environment's `SEGUE_TOKEN_KEY`, else a random one, the same for every replica. `repo` is
    the checkout the services run from (their working directory, and where deploy/ is read).
    Waits at most `ready_timeout_s` seconds for every replica's health check to say SERVING.
    Logs go to workdir/logs/, the matcher's store to workdir/qdrant/.
    `auth=True` runs the services with a generated token file (stack.token holds the token);
    otherwise they run with SEGUE_INSECURE_DEV=1, for development only.
    """
    counts = _replica_counts(services, replicas)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    extra = env or {}
    token_key = (extra.get("SEGUE_TOKEN_KEY") or os.environ.get("SEGUE_TOKEN_KEY")
                 or secrets.token_hex(32))
    security, token = _security_env(workdir, auth)
    base_env = {**os.environ, "SEGUE_GRPC_HOST": HOST,
                "SEGUE_QDRANT_PATH": str(workdir / "qdrant"), "SEGUE_TOKEN_KEY": token_key,
                **security}
    if token is not None:
        base_env["SEGUE_TOKEN"] = token  # the mixer's own calls to the matcher
    stack = Stack(token_key=token_key, token=token)
    with ExitStack() as stop:
        procs = _start_services(stop, stack, workdir, counts, base_env, extra, repo)
        asyncio.run(_wait_all(stack, procs, ready_timeout_s))
        if prometheus:
            _start_prometheus(stop, stack, workdir, repo)
        yield stack
