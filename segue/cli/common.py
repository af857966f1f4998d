"""Options and output helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from segue.client.errors import DeadlineExceededError, SegueError
from segue.v1 import matcher_pb2

M = TypeVar("M", bound=Message)

DEFAULT_EMBEDDER = "127.0.0.1:50051"
DEFAULT_MATCHER = "127.0.0.1:50052"
DEFAULT_MIXER = "127.0.0.1:50053"


def add_target(parser: argparse.ArgumentParser, name: str, default: str) -> None:
    """Adds --<name> HOST:PORT, defaulting to the env var SEGUE_<NAME>_ADDR or loopback."""
    import os

    env = f"SEGUE_{name.upper()}_ADDR"
    parser.add_argument(
        f"--{name}",
        default=os.environ.get(env, default),
        metavar="HOST:PORT",
        help=f"{name} service address (env {env}; default {default})",
    )


def message_to_json(message: Message) -> dict[str, Any]:
    """A protobuf message as JSON-ready dict with the proto's field names."""
    out: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def fail(message: str) -> int:
    """Prints an error for a person and returns the exit code for failures."""
    print(f"segue: {message}", file=sys.stderr)
    return 1


def describe_error(error: SegueError) -> str:
    """A one-line message for a person: the service, its address, the RPC, status, details."""
    text = (f"{error.service.lower()} at {error.address}: {error.method} failed: "
            f"{error.code().name.lower()}: {error.details() or '(no details)'}")
    if isinstance(error, DeadlineExceededError) and error.timeout_s is not None:
        text += f" (deadline {error.timeout_s:g} s)"
    return text


def display_name(metadata: matcher_pb2.SongMetadata, song_id: str) -> str:
    """"Artist - Title" when both are known, else the title or the song id."""
    name = metadata.title or song_id
    return f"{metadata.artist} - {name}" if metadata.artist else name


def show_response(query: Coroutine[Any, Any, M], as_json: bool,
                  table: Callable[[M], Table]) -> int:
    """Runs one service call and prints its response as JSON or as a table for a person.

    Errors from the service or the arguments become a one-line message and exit code 1.
    """
    try:
        response = asyncio.run(query)
    except SegueError as e:
        return fail(describe_error(e))
    except ValueError as e:
        return fail(str(e))
    if as_json:
        print_json(message_to_json(response))
    else:
        Console().print(table(response))
    return 0
