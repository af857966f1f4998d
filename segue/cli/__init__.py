"""The `segue` command line.

Each sub-command lives in its own module in this package and exposes
`add_parser(subparsers)`, which registers the command and sets `func` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that define sub-commands, in the order `segue --help` lists them.
COMMAND_MODULES = ("analyze", "index", "next", "similar", "playlist", "mix", "export", "load")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segue",
        description="Analyse songs, find the best next segment, and render seamless transitions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"segue.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
