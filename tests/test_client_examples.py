"""The SDK's documented examples run as written against real services on loopback: every
`Example::` block in segue.client's docstrings, and the README's "Python SDK" snippet.

The examples name the services' default ports (50051 embedder, 50052 matcher, 50053 mixer) and
files such as song.mp3; the tests serve real services on free ports, swap those in, and run
each example in a folder holding real songs under those names.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import inspect
import io
import os
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_servers import matcher_server
from conftest import ThreadServer
from mixer_fixtures import MixerThreadServer

import segue.client
from segue.audio import decode, encode
from segue.client import EmbedderClient, MatcherClient

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PORTS = {"embedder": "127.0.0.1:50051", "matcher": "127.0.0.1:50052",
                 "mixer": "127.0.0.1:50053"}
# Songs the matcher stores before the examples run, so that NextSegment has candidates.
LIBRARY = ("other-1", "other-2")


def examples_in(doc: str | None) -> list[str]:
    """The code of each `Example::` block of a docstring, dedented."""
    lines = inspect.cleandoc(doc or "").splitlines()
    found: list[str] = []
    for start, line in enumerate(lines):
        if line.rstrip().endswith("Example::"):
            block: list[str] = []
            for following in lines[start + 1 :]:
                if following.strip() and not following.startswith("    "):
                    break
                block.append(following)
            found.append(inspect.cleandoc("\n".join(block)))
    return found


def documented_examples() -> dict[str, str]:
    """Every example in segue.client's module, class and function docstrings, by owner."""
    examples: dict[str, str] = {}
    names = ["segue.client"] + [
        f"segue.client.{m.name}" for m in pkgutil.iter_modules(segue.client.__path__)]
    for name in names:
        module = importlib.import_module(name)
        owners = [(name, module)] + [
            (f"{name}.{attr}", obj) for attr, obj in vars(module).items()
            if (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == name
        ]
        for owner, obj in owners:
            for i, code in enumerate(examples_in(obj.__doc__)):
                examples[owner if i == 0 else f"{owner}[{i}]"] = code
    return examples


def readme_example() -> str:
    """The python block under the README's "The Python SDK" heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("## The Python SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's Python SDK section has no python block"
    return match.group(1)


EXAMPLES = documented_examples()


@pytest.fixture(scope="module")
def addresses(
    embedder_server: ThreadServer, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """The three services on free loopback ports, by name."""
    matcher = matcher_server(tmp_path_factory.mktemp("examples"))
    mixer = MixerThreadServer().start()
    yield {"embedder": embedder_server.address, "matcher": matcher.address,
           "mixer": mixer.address}
    mixer.stop()
    matcher.stop()


@pytest.fixture(scope="module")
def folder(
    music_tracks: list[Path], addresses: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A folder with the songs the examples open, and a matcher that stores two others."""
    root = tmp_path_factory.mktemp("songs")
    for name, track in zip(("song.mp3", "next.mp3", "a.mp3", "b.flac"), music_tracks[6:10],
                           strict=True):
        fmt = name.rsplit(".", 1)[1]
        (root / name).write_bytes(encode(decode(track, 44100), 44100, fmt))

    async def store_library() -> None:
        async with EmbedderClient(addresses["embedder"]) as embedder, \
                MatcherClient(addresses["matcher"]) as matcher:
            for song_id, track in zip(LIBRARY, music_tracks[10:12], strict=True):
                result = await embedder.analyze_file(track, song_id=song_id)
                await matcher.upsert_song(result.analysis)

    asyncio.run(store_library())
    return root


def run_example(code: str, addresses: dict[str, str], folder: Path) -> str:
    """Runs example code (top-level await allowed) in `folder`; returns what it printed."""
    for service, default in DEFAULT_PORTS.items():
        code = code.replace(default, addresses[service])
    compiled = compile(code, "<example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    printed = io.StringIO()
    # The example's own print, not sys.stdout: the in-process servers log there too.
    names = {"__name__": "__example__", "print": functools.partial(print, file=printed)}
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        result = eval(compiled, names)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    finally:
        os.chdir(cwd)
    return printed.getvalue()


def test_the_package_example_analyses_stores_matches_reports_an_error_and_mixes(
    addresses: dict[str, str], folder: Path,
) -> None:
    lines = run_example(EXAMPLES["segue.client"], addresses, folder).splitlines()
    bpm, camelot = lines[0].split()
    assert float(bpm) > 0 and re.fullmatch(r"\d{1,2}[AB]", camelot)
    assert lines[1].startswith(f"Matcher.GetSong at {addresses['matcher']}: not_found: ")
    assert re.match(r"\d+ bars: ", lines[2])


def test_the_embedder_example_prints_tempo_key_windows_and_checkpoints(
    addresses: dict[str, str], folder: Path,
) -> None:
    lines = run_example(EXAMPLES["segue.client.embedder"], addresses, folder).splitlines()
    assert float(lines[0].split()[0]) > 0
    windows, checkpoints = re.findall(r"\d+", lines[1])
    assert int(windows) > 0 and int(checkpoints) > 0


def test_the_matcher_example_prints_candidates_from_the_library_and_the_stored_song(
    addresses: dict[str, str], folder: Path,
) -> None:
    lines = run_example(EXAMPLES["segue.client.matcher"], addresses, folder).splitlines()
    candidates, stored = lines[:-1], lines[-1]
    assert candidates and {line.split()[0] for line in candidates} <= set(LIBRARY)
    assert stored.startswith("Song ") and int(stored.split()[-1]) > 0


def test_the_mixer_example_writes_a_playable_mix_and_prints_why_it_is_that_long(
    addresses: dict[str, str], folder: Path,
) -> None:
    (folder / "mix.mp3").unlink(missing_ok=True)
    printed = run_example(EXAMPLES["segue.client.mixer"], addresses, folder)
    assert printed.strip()
    assert decode(folder / "mix.mp3", 22050).size > 22050


def test_the_errors_example_catches_not_found_and_prints_what_it_says(
    addresses: dict[str, str], folder: Path,
) -> None:
    printed = run_example(EXAMPLES["segue.client.errors"], addresses, folder)
    assert printed == "NOT_FOUND Matcher GetSong\n"
    assert "which prints ``NOT_FOUND Matcher GetSong``" in (segue.client.errors.__doc__ or "")


def test_the_package_and_each_client_module_have_one_example_and_each_is_tested_here() -> None:
    tested = {"segue.client", "segue.client.embedder", "segue.client.matcher",
              "segue.client.mixer", "segue.client.errors"}
    assert set(EXAMPLES) == tested, "add a test here for each new example"


def test_the_readme_python_sdk_snippet_runs_as_written(
    addresses: dict[str, str], folder: Path,
) -> None:
    printed = run_example(readme_example(), addresses, folder)
    assert printed.strip(), "the README snippet printed nothing"
