"""The command line starts quickly: building its parser (every command's options) imports
neither the model runtime nor the analysis stack, which only `analyze --local` needs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("onnxruntime", "scipy.signal", "segue.embedding.stream_state", "segue.structure.analysis")


def test_building_the_parser_imports_no_model_or_analysis_module() -> None:
    probe = (
        "import sys\n"
        "from segue.cli import build_parser\n"
        "build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == ""


def test_the_structure_package_still_offers_every_name_it_lists() -> None:
    import segue.structure as structure

    for name in structure.__all__:
        assert getattr(structure, name) is not None
