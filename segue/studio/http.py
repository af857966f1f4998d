"""HTTP plumbing of the Studio: refusals with the field they name, bounded bodies, security
headers, metrics, and audio files served with range requests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match

from segue.metrics import STUDIO_REQUEST_DURATION, STUDIO_REQUESTS
from segue.studio.ranges import RangeNotSatisfiable, parse_range

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

# No inline scripts or styles, nothing framed, and no Referer to other sites: invite links
# carry their token ("same-origin" rather than "no-referrer", under which browsers send
# "Origin: null" with same-site forms and the origin check could not tell them apart).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; media-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@dataclass
class Refusal(Exception):  # noqa: N818  # a refusal is an answer, not an error of ours
    """A request the Studio refuses: `status` (4xx), the `field` at fault, and why."""

    status: int
    field: str
    message: str

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "field": self.field}, self.status)


async def refusal_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return exc.response()


# Bytes read from an audio file at a time: clips are a few hundred KiB, but mixes run to
# hundreds of MiB and browsers ask for them whole ("bytes=0-").
CHUNK_BYTES = 256 * 1024


def file_chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    """`length` bytes of the file from `start`, CHUNK_BYTES at a time."""
    with path.open("rb") as f:
        f.seek(start)
        while length > 0:
            data = f.read(min(CHUNK_BYTES, length))
            if not data:
                return
            length -= len(data)
            yield data


def audio_response(request: Request, path: Path, media_type: str = "audio/ogg") -> Response:
    """The file whole (200) or the asked byte range (206), streamed; 416 for a range it
    cannot serve exactly."""
    size = path.stat().st_size
    headers = {"accept-ranges": "bytes", "cache-control": "private, max-age=3600"}
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    if byte_range is None:
        headers["content-length"] = str(size)
        return StreamingResponse(file_chunks(path, 0, size), media_type=media_type,
                                 headers=headers)
    headers["content-range"] = byte_range.content_range(size)
    headers["content-length"] = str(byte_range.length)
    return StreamingResponse(file_chunks(path, byte_range.start, byte_range.length), 206,
                             media_type=media_type, headers=headers)


class BodyLimit:
    """Reads at most `max_bytes` of a request body before the app sees it; larger ones get 413
    without being read further, so no request can hold more memory than that."""

    def __init__(self, app: Asgi, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body = await self._read(scope, receive)
        if body is None:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        await self.app(scope, replay(body), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return None
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"error": f"the request body is over {max_bytes} bytes",
                         "field": "body"}, 413, headers={"connection": "close"})


def replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class Instrumented:
    """Adds the security headers to every response and records its latency and status under
    the route's template (never the raw path, which holds tokens and ids)."""

    def __init__(self, app: Asgi, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                         if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.template(scope)
        STUDIO_REQUEST_DURATION.labels(route, scope["method"]).observe(seconds)
        STUDIO_REQUESTS.labels(route, scope["method"], str(status)).inc()

    def template(self, scope: Scope) -> str:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"


__all__ = ["SECURITY_HEADERS", "BodyLimit", "Instrumented", "Refusal", "audio_response",
           "refusal_handler"]
