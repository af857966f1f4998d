"""Runs the embedder service: `python -m services.embedder`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import grpc

from segue.config import ServerConfig, describe
from segue.log import configure_logging, get_logger
from segue.server import serve_forever
from segue.v1 import embedder_pb2, embedder_pb2_grpc
from services.embedder.config import EmbedderConfig
from services.embedder.model import StreamModel
from services.embedder.servicer import EmbedderServicer

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
        log.warning("SEGUE_TOKEN_KEY is not set: resume tokens are signed with the public "
                    "development key; set a secret shared by all replicas in production")
    servicer = build_servicer(server_config, config)
    spec = servicer.model.spec
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
