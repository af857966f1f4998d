"""The three services (and optionally Prometheus) as real processes on loopback.

Used by `make demo`, the live observability test and the load benchmark, so all three run the
stack the same way an operator would: `python -m services.<name>` with environment settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("embedder", "matcher", "mixer")
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.local.yml"
RULE_FILE = REPO / "deploy" / "prometheus" / "rules" / "segue.rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    """Addresses of a running stack."""

    grpc: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    prometheus: str = ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query against the stack's Prometheus HTTP API."""
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            payload = json.loads(response.read())
        if payload["status"] != "success":
            raise RuntimeError(f"Prometheus query {expr!r} failed: {payload}")
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result


async def wait_serving(address: str, deadline_s: float = 90.0) -> None:
    """Waits until a service's gRPC health check answers SERVING."""
    end = time.monotonic() + deadline_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                if time.monotonic() > end:
                    raise
            await asyncio.sleep(0.3)


def _wait_http(url: str, deadline_s: float = 30.0) -> None:
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
def _process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def running_stack(workdir: Path, *, prometheus: bool = False,
                  env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Starts the services (and Prometheus scraping them with the project's rules).

    Logs go to workdir/logs/, the matcher's store to workdir/qdrant/.
    """
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack()
    with ExitStack() as stop:
        for name in SERVICES:
            grpc_port, metrics_port = free_port(), free_port()
            service_env = {
                **os.environ,
                "SEGUE_GRPC_HOST": "127.0.0.1",
                "SEGUE_GRPC_PORT": str(grpc_port),
                "SEGUE_METRICS_PORT": str(metrics_port),
                "SEGUE_QDRANT_PATH": str(workdir / "qdrant"),
                **(env or {}),
            }
            stop.enter_context(_process([sys.executable, "-m", f"services.{name}"],
                                        workdir / "logs" / f"{name}.log", service_env))
            stack.grpc[name] = f"127.0.0.1:{grpc_port}"
            stack.metrics[name] = f"127.0.0.1:{metrics_port}"
        for address in stack.grpc.values():
            asyncio.run(wait_serving(address))
        if prometheus:
            binary = shutil.which("prometheus")
            if binary is None:
                raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
            config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
            config["rule_files"] = [str(RULE_FILE)]
            for job in config["scrape_configs"]:
                name = job["job_name"].removeprefix("segue-")
                job["static_configs"] = [{"targets": [stack.metrics[name]]}]
            (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
            web = f"127.0.0.1:{free_port()}"
            stop.enter_context(_process(
                [binary, f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address={web}"],
                workdir / "logs" / "prometheus.log"))
            stack.prometheus = f"http://{web}"
            _wait_http(f"{stack.prometheus}/-/ready")
        yield stack
