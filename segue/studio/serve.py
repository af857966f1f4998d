"""`segue studio serve`: builds the Studio from its settings and serves it with uvicorn."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from segue.client.security import ClientSecurity
from segue.metrics import STUDIO_CLIPS_WARM, serve_metrics
from segue.studio.access import AdminPassword
from segue.studio.app import Studio, create_app
from segue.studio.clips import ClipCache
from segue.studio.config import StudioConfig
from segue.studio.library import load_library
from segue.studio.sql_store import SqlStore
from segue.studio.study import StudyFlow

log = logging.getLogger("segue.studio")


def build(config: StudioConfig) -> Studio:
    """The Studio over the matcher's library; raises ValueError when nothing can be served."""
    library = asyncio.run(load_library(config.matcher_address, ClientSecurity.from_env(),
                                       min_duration_s=config.clip_s))
    if len(library.songs) < 3:
        raise ValueError(f"the matcher at {config.matcher_address} has {len(library.songs)} "
                         "songs with a local audio file at least one clip long; the Studio "
                         "needs 3 or more (index a folder with `segue index DIR`)")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore.open(config.database_url)
    flow = StudyFlow(store, library, ClipCache(config.clip_cache_dir), config)
    return Studio(config, store, flow, AdminPassword.from_file(config.admin_password_file))


def export_warm_up(studio: Studio) -> None:
    """The warm-up's progress as the segue_studio_clips_warm gauge, read at each scrape."""
    progress = studio.flow.prefetcher.progress
    STUDIO_CLIPS_WARM.labels("total").set_function(lambda: progress().total)
    STUDIO_CLIPS_WARM.labels("done").set_function(lambda: progress().done)
    STUDIO_CLIPS_WARM.labels("failed").set_function(lambda: progress().failed)


def serve(config: StudioConfig) -> int:
    studio = build(config)
    if not studio.password.enabled:
        log.warning("admin pages are closed: set SEGUE_STUDIO_ADMIN_PASSWORD_FILE to open them")
    serve_metrics(config.metrics_port, config.host)
    log.info("cutting up to %d clips of the library ahead", studio.flow.warm_library())
    export_warm_up(studio)
    server = uvicorn.Server(uvicorn.Config(
        create_app(studio), host=config.host, port=config.port, log_config=None,
        server_header=False, proxy_headers=False, timeout_keep_alive=15,
        limit_concurrency=512, h11_max_incomplete_event_size=16 * 1024))
    try:
        server.run()
    finally:
        studio.store.close()
    return 0


__all__ = ["build", "serve"]
