"""The module layout DESIGN.md describes, pinned: who may import what, and how large a module grows."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("bench", "models", "data")
MAX_MODULE_LINES = 400  # one concern a module: none over 400 lines
MAX_CLI_LINES = 149  # bench/run.py only parses, dispatches and maps errors: under 150


def modules(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Top-level package names of every import in ``path`` (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_the_runner_imports_ray():
    importers = [
        path.relative_to(REPO_ROOT).as_posix()
        for package in PACKAGES
        for path in modules(package)
        if any(name == "ray" or name.startswith("ray.") for name in imported(path))
    ]
    assert importers == ["bench/execute/runner.py"]


@pytest.mark.parametrize("package", ["models", "data"])
def test_models_and_data_import_nothing_from_bench(package):
    for path in modules(package):
        assert not [name for name in imported(path) if name == "bench" or name.startswith("bench.")], path


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_grows_past_its_limit(package):
    for path in modules(package):
        lines = len(path.read_text().splitlines())
        limit = MAX_CLI_LINES if path == REPO_ROOT / "bench" / "run.py" else MAX_MODULE_LINES
        assert lines <= limit, f"{path.relative_to(REPO_ROOT)} has {lines} lines (limit {limit})"


def test_nvml_is_initialised_in_one_place():
    callers = [path.relative_to(REPO_ROOT).as_posix() for path in modules("bench") if "nvmlInit(" in path.read_text()]
    assert callers == ["bench/trial/gpu.py"]


def test_every_module_says_what_it_owns():
    for package in PACKAGES:
        for path in modules(package):
            if path.name != "__init__.py" or path.read_text().strip():
                assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


def test_the_boards_and_their_command_import_neither_keras_nor_ray():
    """``python -m bench.compare`` reads finished runs: it must start in a moment, with no TensorFlow notes."""
    code = "import sys, bench.compare; print(sorted(m for m in ('keras', 'tensorflow', 'ray') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
