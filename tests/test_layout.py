"""The layout is the architecture: engines live in `segue/`, services are thin shells over them."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Top-level folders that run from a checkout and are never installed with the package.
CHECKOUT_ONLY = ("services", "devkit", "training", "bench", "tests", "scripts", "deploy")
MAX_MIXING_FUNCTION_LINES = 60


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_module_of_the_segue_package_imports_a_checkout_only_folder() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / "segue").rglob("*.py"))
        for line, module in _imported_modules(path)
        if module.split(".")[0] in CHECKOUT_ONLY
    ]
    assert offenders == []


def test_the_import_walk_sees_imports_nested_in_functions(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f() -> None:\n    from services.mixer import servicer\n")
    assert (2, "services.mixer") in _imported_modules(module)


def test_only_the_segue_package_is_installed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["segue*"]


def test_services_keep_only_their_grpc_shell() -> None:
    shells = {"__init__.py", "__main__.py", "config.py", "servicer.py"}
    extra = {
        "embedder": {"batcher.py", "resume_token.py"},
        # Request checks and intake; the matcher client for stored analyses.
        "mixer": {"requests.py", "analyses.py"},
    }
    for name, allowed in extra.items():
        files = {p.name for p in (REPO / "services" / name).glob("*.py")}
        assert files <= shells | allowed, f"services/{name} holds engine code: {files - shells}"


def test_no_function_in_the_mixing_engine_is_longer_than_sixty_lines() -> None:
    long_ones = []
    for path in sorted((REPO / "segue" / "mixing").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_MIXING_FUNCTION_LINES:
                    long_ones.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert long_ones == []
