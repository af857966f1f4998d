"""Runs the embedder service: `python -m services.embedder`."""

from __future__ import annotations

import os

# Before numpy loads: per-window BLAS calls are small, and extra BLAS threads only spin on
# the cores that the event loop and the ONNX Runtime worker need (set them to override).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import asyncio  # noqa: E402
import gc  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import grpc  # noqa: E402

from segue.config import ServerConfig, describe  # noqa: E402
from segue.embedding.model import StreamModel  # noqa: E402
from segue.log import configure_logging, get_logger  # noqa: E402
from segue.server import serve_forever  # noqa: E402
from segue.v1 import embedder_pb2, embedder_pb2_grpc  # noqa: E402
from services.embedder.config import EmbedderConfig  # noqa: E402
from services.embedder.servicer import EmbedderServicer  # noqa: E402

GRPC_PORT = 50051
METRICS_PORT = 9101

log = get_logger("segue.embedder")


def build_servicer(server_config: ServerConfig, config: EmbedderConfig) -> EmbedderServicer:
    model = StreamModel(config.model_path, provider=config.execution_provider,
                        intra_threads=config.ort_threads)
    return EmbedderServicer(model, config, server_config.max_message_bytes)


def registrar(servicer: EmbedderServicer) -> Callable[[grpc.aio.Server], Sequence[str]]:
    def register(server: grpc.aio.Server) -> Sequence[str]:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)
        return [embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name]

    return register


async def main() -> None:
    server_config = ServerConfig.from_env("embedder", GRPC_PORT, METRICS_PORT)
    configure_logging(server_config.log_level, server_config.log_format)
    config = EmbedderConfig.from_env()
    if config.uses_dev_token_key:
        if not server_config.insecure_dev:
            raise SystemExit("embedder: SEGUE_TOKEN_KEY is not set; refusing to seal resume "
                             "tokens with the public development key (set a secret shared by "
                             "all replicas, or SEGUE_INSECURE_DEV=1 for local development)")
        log.warning("SEGUE_TOKEN_KEY is not set: resume tokens are sealed with the public "
                    "development key (SEGUE_INSECURE_DEV=1); never do this in production")
    servicer = build_servicer(server_config, config)
    spec = servicer.model.spec
    # Start-up objects (modules, the model session) live forever: keep them out of the cyclic
    # collector's full passes, which the per-window garbage would otherwise trigger.
    gc.freeze()
    try:
        await serve_forever(
            server_config,
            registrar(servicer),
            on_shutdown=[servicer.drain],
            extra_log={
                "model": spec.name, "model_version": spec.version, "model_sha256": spec.sha256,
                "execution_provider": servicer.model.provider, "embedder": describe(config),
            },
        )
    finally:
        await servicer.close()


if __name__ == "__main__":
    asyncio.run(main())
