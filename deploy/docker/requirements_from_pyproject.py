"""Prints the runtime requirements of pyproject.toml plus the named extras, one per line.

The image build installs these before copying the code, so the dependency layer is cached
until pyproject.toml changes:  python requirements_from_pyproject.py pyproject.toml cpu
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extras: {', '.join(unknown)}")
    reqs: list[str] = list(project["dependencies"])
    for extra in extras:
        reqs.extend(optional[extra])
    return reqs


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print("usage: requirements_from_pyproject.py PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    print("\n".join(requirements(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
