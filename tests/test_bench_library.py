"""The library benchmark's memory figure: a process is counted once however it is reached."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from bench.bench_library import _tree_rss

HOLD_MB = 64


@pytest.fixture
def child() -> Iterator[psutil.Process]:
    """A child process holding HOLD_MB of touched memory until it is killed."""
    code = f"import sys, time; b = bytearray({HOLD_MB} << 20); print(flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()  # the memory is allocated
    yield psutil.Process(proc.pid)
    proc.kill()
    proc.wait()


def test_a_child_also_passed_as_a_root_is_counted_once(child: psutil.Process) -> None:
    me = psutil.Process()
    once = _tree_rss([me])
    assert once >= me.memory_info().rss + HOLD_MB * 2**20  # the child is in the tree
    # The service step passes its replicas (this process's children) as roots as well.
    assert _tree_rss([me, child]) == pytest.approx(once, rel=0.02)
    assert _tree_rss([child, child]) == pytest.approx(child.memory_info().rss, rel=0.02)
