"""Exits 0 when the local Segue Studio answers GET /healthz with 200, else 1.

Used by the studio image's HEALTHCHECK (Kubernetes probes it with httpGet instead). It follows
the server's own settings, with the standard library only:

- address: SEGUE_STUDIO_HOST, or 127.0.0.1 when the server binds every interface (0.0.0.0, ::);
- port: --port, else SEGUE_STUDIO_PORT, else 8700.

The Studio serves plain HTTP (TLS ends at the ingress in front of it) and /healthz needs no
login, so nothing else is sent.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORT = 8700


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def url(port: int, path: str = "/healthz") -> str:
    """The local URL to ask: the server's bind address unless it binds everything."""
    host = _env("SEGUE_STUDIO_HOST")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a healthy answer: report it instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def check(port: int, path: str, timeout_s: float) -> bool:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url(port, path), timeout=timeout_s) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"health check failed: {e}", file=sys.stderr)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=int(_env("SEGUE_STUDIO_PORT") or DEFAULT_PORT))
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    return 0 if check(args.port, args.path, args.timeout) else 1


if __name__ == "__main__":
    raise SystemExit(main())
