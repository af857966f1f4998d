"""Runs the matcher: `python -m services.matcher` (settings in config.py and segue/config.py)."""

from __future__ import annotations

import asyncio

from segue.config import ServerConfig
from segue.log import configure_logging, get_logger
from segue.server import serve_forever
from services.matcher.config import DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT, MatcherConfig
from services.matcher.errors import StoreUnavailableError
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register
from services.matcher.store_factory import open_store

log = get_logger("segue.matcher")


async def main() -> None:
    server_config = ServerConfig.from_env("matcher", DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT)
    configure_logging(server_config.log_level, server_config.log_format)
    config = MatcherConfig.from_env()
    store = open_store(config)
    library = SongLibrary(store, flush_each_write=config.flush_each_write)
    try:
        repaired = library.recover()
        songs, segments = library.preload()
        log.info("store ready", songs_repaired=repaired, songs=songs, segments=segments)
    except StoreUnavailableError as e:
        # A server may come up later: serve UNAVAILABLE until it does, then recover on restart.
        log.warning("qdrant unavailable at start-up", error=str(e))
    servicer = MatcherServicer.from_config(library, config)
    servicer.refresh_point_gauge()

    optimizer = asyncio.create_task(servicer.optimizer.run_periodically())

    async def close_store() -> None:
        optimizer.cancel()
        servicer.close()
        await asyncio.to_thread(store.close)

    await serve_forever(
        server_config,
        register(servicer),
        on_stopped=[close_store],
        extra_log={"matcher": config.describe()},
    )


if __name__ == "__main__":
    asyncio.run(main())
