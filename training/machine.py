"""A one-line description of the machine, for benchmark and evaluation reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import onnxruntime as ort


def describe() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The development machine is shared: the load average says how busy it was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, onnxruntime {ort.__version__}, "
        f"load average {load} at start"
    )
