"""Options and output helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

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
