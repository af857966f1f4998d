"""The Studio's web application: routes, middleware and the parts they share."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from segue.studio import admin_pages, listening_pages, mix_pages, study_pages
from segue.studio.access import AdminPassword, FailureLimiter
from segue.studio.clips import ClipError
from segue.studio.config import StudioConfig
from segue.studio.http import BodyLimit, Instrumented, Refusal, refusal_handler
from segue.studio.store import StudioStore
from segue.studio.study import StudyFlow

PACKAGE = Path(__file__).resolve().parent
log = logging.getLogger("segue.studio")


@dataclass
class Studio:
    """Everything a request handler needs, built once at start-up."""

    config: StudioConfig
    store: StudioStore
    flow: StudyFlow
    password: AdminPassword
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(PACKAGE / "templates")))


def routes(studio: Studio) -> list[BaseRoute]:
    return [
        *study_pages.routes(studio),
        *admin_pages.routes(studio),
        *listening_pages.routes(studio),
        *mix_pages.routes(studio),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static"),
    ]


async def healthz(request: Request) -> Response:
    """Liveness, with the songs served and how far the clip warm-up is (clips handled of
    those queued)."""
    flow = request.app.state.studio.flow
    warm = flow.prefetcher.progress()
    return JSONResponse({"status": "ok", "songs": len(flow.library.songs), "clips_warm": {
        "done": warm.done, "total": warm.total, "failed": warm.failed,
        "finished": warm.finished}})


async def clip_unavailable(request: Request, exc: Exception) -> Response:
    """503 for a clip ffmpeg could not make; the cause (which names the song) is logged, not
    shown: the annotator's clips are blind."""
    error_id = uuid.uuid4().hex[:16]
    log.error("a clip could not be made (error id %s): %s", error_id, exc)
    return JSONResponse({"error": f"this clip cannot be played now (error id {error_id}); "
                                  "please try again later", "field": "slot"}, 503,
                        headers={"retry-after": "60"})


async def not_found(request: Request, exc: Exception) -> Response:
    return Refusal(404, "path", f"no page at {request.url.path}").response()


def create_app(studio: Studio) -> Instrumented:
    """The ASGI app: bounded bodies inside, security headers and metrics outside."""
    table = routes(studio)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        studio.flow.prefetcher.close()  # queued cuts are not waited for

    app = Starlette(routes=table, exception_handlers={
        Refusal: refusal_handler, ClipError: clip_unavailable, 404: not_found},
        lifespan=lifespan)
    app.state.studio = studio
    return Instrumented(BodyLimit(app, studio.config.max_body_bytes), table)


__all__ = ["Studio", "create_app", "routes"]
