"""Structured JSON logging (structlog) shared by the services.

Request-scoped fields such as `stream_id` and `song_id` are bound with
`structlog.contextvars.bind_contextvars` so every line a stream logs carries them.
Every line is one JSON object, including those of libraries that log through the standard
`logging` module (gRPC, Qdrant's client, httpx), and credentials in URLs are masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# userinfo of a URL: "scheme://user:password@" (or "scheme://token@"), up to the authority's
# last "@" (a password may hold a raw "@").
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
# Query parameters that carry credentials: "?api_key=...", "&token=...".
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&](?:api[-_]?key|key|token|access_token|password|secret)=)[^&#\s]*",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """`text` with URL credentials and secret query parameters replaced by ***."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _QUERY_SECRET.sub(r"\g<name>***", text)


def _mask_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and ("://" in value or "=" in value):
            event[key] = mask_secrets(value)
    return event


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Routes structlog and stdlib logging to stderr as one JSON object per line."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _mask_event,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(numeric, shared, renderer)


def _route_stdlib_logging(level: int, shared: list[structlog.typing.Processor],
                          renderer: structlog.typing.Processor) -> None:
    """Formats the standard library's log records with the same processors and renderer."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
