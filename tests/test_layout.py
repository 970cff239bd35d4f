"""The module layout DESIGN.md describes, pinned: bench/ as the stages a run goes through, who may
import what, no import circle, how large a module grows, and the code as ruff formats it."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("bench", "models", "data")
STAGES = ("plan", "execute", "trial", "report")
ENTRY_POINTS = ("bench/run.py", "bench/compare.py")  # the commands: they may reach every stage
# stage -> the stages it may import besides itself and bench/'s ground floor
MAY_IMPORT = {
    "plan": {"trial"},  # estimates build models; a plan's checkpoint rule is the trial's
    "trial": set(),  # a trial runs without a plan, Ray or a report
    "report": {"plan", "trial"},  # a finished run's goals and figures
    "execute": {"plan", "trial", "report"},
}
SUPPORT = ("benchmarks", "support")  # beside the product: its benchmarks and what they share with tests/
MAX_MODULE_LINES = 400  # one concern a module: none over 400 lines
MAX_CLI_LINES = 149  # bench/run.py only dispatches: under 150


def modules(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every name ``path`` imports (function-level imports included): ``from a import b`` counts as
    ``a.b`` where that is one of this project's modules, else as ``a``."""
    ours = {module_name(module) for package in PACKAGES for module in modules(package)}
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & ours
            names |= submodules or {node.module}
            if len(submodules) < len(node.names):
                names.add(node.module)
    return names


def stages_imported(path: Path) -> set[str]:
    """The stage folders of bench/ that ``path`` imports from."""
    parts = [name.split(".") for name in imported(path)]
    return {part[1] for part in parts if len(part) > 1 and part[0] == "bench" and part[1] in STAGES}


def project_graph() -> dict[str, set[str]]:
    """Module -> this project's modules it imports."""
    paths = {module_name(path): path for package in PACKAGES for path in modules(package)}
    return {
        name: {other for other in imported(path) if other in paths and other != name} for name, path in paths.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle in ``graph``, each as the path that closes it (depth-first search)."""
    found, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                found.append([*trail[trail.index(other) :], name, other] if other in trail else [name, other])
            elif other not in state:
                visit(other, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return found


def test_bench_is_four_stage_folders_over_a_ground_floor():
    folders = sorted(path.name for path in (REPO_ROOT / "bench").iterdir() if (path / "__init__.py").is_file())
    assert folders == sorted(STAGES)
    for stage in STAGES:
        assert ast.get_docstring(ast.parse((REPO_ROOT / "bench" / stage / "__init__.py").read_text())), stage


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_the_stages_below_it(stage):
    allowed = MAY_IMPORT[stage] | {stage}
    for path in (REPO_ROOT / "bench" / stage).rglob("*.py"):
        reached = stages_imported(path)
        assert reached <= allowed, f"{path.relative_to(REPO_ROOT)} imports bench/{sorted(reached - allowed)}"


def test_the_ground_floor_imports_no_stage():
    for path in (REPO_ROOT / "bench").glob("*.py"):
        if path.relative_to(REPO_ROOT).as_posix() in ENTRY_POINTS:
            continue
        assert not stages_imported(path), f"{path.relative_to(REPO_ROOT)} imports bench/{sorted(stages_imported(path))}"


def test_no_import_circle_anywhere():
    assert circles(project_graph()) == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_only_the_execute_stage_imports_ray():
    importers = [
        path.relative_to(REPO_ROOT).as_posix()
        for package in PACKAGES
        for path in modules(package)
        if any(name == "ray" or name.startswith("ray.") for name in imported(path))
    ]
    assert importers and all(path.startswith("bench/execute/") for path in importers), importers


@pytest.mark.parametrize("package", ["models", "data"])
def test_models_and_data_import_nothing_from_bench(package):
    for path in modules(package):
        assert not [name for name in imported(path) if name == "bench" or name.startswith("bench.")], path


@pytest.mark.parametrize("package", SUPPORT)
def test_benchmarks_and_their_support_import_nothing_from_tests(package):
    for path in modules(package):
        reached = [name for name in imported(path) if name == "tests" or name.startswith("tests.")]
        assert not reached, f"{path.relative_to(REPO_ROOT)} imports {reached}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_product_imports_neither_benchmarks_nor_their_support(package):
    for path in modules(package):
        reached = [name for name in imported(path) if name.split(".")[0] in SUPPORT]
        assert not reached, f"{path.relative_to(REPO_ROOT)} imports {reached}"


@pytest.mark.parametrize("package", [*PACKAGES, *SUPPORT])
def test_no_module_grows_past_its_limit(package):
    for path in modules(package):
        lines = len(path.read_text().splitlines())
        limit = MAX_CLI_LINES if path == REPO_ROOT / "bench" / "run.py" else MAX_MODULE_LINES
        assert lines <= limit, f"{path.relative_to(REPO_ROOT)} has {lines} lines (limit {limit})"


def test_nvml_is_initialised_in_one_place():
    callers = [path.relative_to(REPO_ROOT).as_posix() for path in modules("bench") if "nvmlInit(" in path.read_text()]
    assert callers == ["bench/trial/gpu.py"]


def test_every_module_says_what_it_owns():
    for package in (*PACKAGES, *SUPPORT):
        for path in modules(package):
            if path.name != "__init__.py" or path.read_text().strip():
                assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


def test_the_boards_and_their_command_import_neither_keras_nor_ray():
    """``python -m bench.compare`` reads finished runs: it must start in a moment, with no TensorFlow notes."""
    code = "import sys, bench.compare; print(sorted(m for m in ('keras', 'tensorflow', 'ray') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_code_is_as_ruff_formats_it_with_nothing_kept_from_the_formatter():
    skipped = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for folder in (*PACKAGES, *SUPPORT, "tests")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "fmt: " + "skip" in line or "fmt: " + "off" in line
    ]
    assert skipped == []
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency (pyproject.toml, test extra)"
    for command in ([ruff, "format", "--check", "."], [ruff, "check", "."]):
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
