"""The `segue` command line.

Each sub-command lives in its own module in this package and exposes
`add_parser(subparsers)`, which registers the command and sets `func` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules that define sub-commands, in the order `segue --help` lists them.
COMMAND_MODULES = ("analyze", "index", "next", "similar", "playlist", "mix", "export", "load",
                   "studio")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segue",
        description="Analyse songs, find the best next segment, and render seamless transitions.",
    )
    _add_security_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"segue.cli.{name}").add_parser(sub)
    return parser


# Option name -> the environment variable the SDK reads (segue.client.security).
SECURITY_OPTIONS = {
    "token_file": "SEGUE_TOKEN_FILE",
    "tls_ca": "SEGUE_TLS_CA",
    "tls_cert": "SEGUE_TLS_CLIENT_CERT",
    "tls_key": "SEGUE_TLS_CLIENT_KEY",
    "tls_server_name": "SEGUE_TLS_SERVER_NAME",
}


def _add_security_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "authentication and TLS (before the command; each defaults to its environment variable)")
    group.add_argument("--token-file", metavar="PATH",
                       help="file holding the bearer token (env SEGUE_TOKEN_FILE; or set "
                            "SEGUE_TOKEN; never pass a token itself on the command line)")
    group.add_argument("--tls-ca", metavar="PEM", help="CA of the servers; turns TLS on "
                       "(env SEGUE_TLS_CA)")
    group.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS "
                       "(env SEGUE_TLS_CLIENT_CERT)")
    group.add_argument("--tls-key", metavar="PEM", help="its private key "
                       "(env SEGUE_TLS_CLIENT_KEY)")
    group.add_argument("--tls-server-name", metavar="NAME", help="name the servers' "
                       "certificates must carry (env SEGUE_TLS_SERVER_NAME)")


def _apply_security_options(args: argparse.Namespace) -> None:
    """Hands the options to every client the command opens, through the SDK's variables."""
    for option, variable in SECURITY_OPTIONS.items():
        value = getattr(args, option, None)
        if value:
            os.environ[variable] = value
            if variable == "SEGUE_TOKEN_FILE":
                os.environ.pop("SEGUE_TOKEN", None)  # the explicit file wins


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _apply_security_options(args)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
