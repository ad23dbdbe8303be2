"""The tree is the pipeline: every import inside ropescope goes from a later stage to an earlier one
(or stays within its own wing), no module imports itself back through a loop, and the quick start in
the package docstring (the code of the docs' Python page; the README shows its first lines) runs as written."""

import ast
import re
import textwrap
from pathlib import Path

import pytest

import ropescope

PACKAGE = Path(ropescope.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_PAGE = README.parent / "docs" / "how-to" / "python.md"

# Stage of every wing, in pipeline order; a module may import its own wing or an earlier stage only.
# Wings on the same stage (heads, prope) do not import each other.
STAGES = {
    "errors": 0,
    "data": 0,
    "version": 0,
    "options": 0,
    "_lazy": 0,
    "files": 1,
    "records": 1,
    "prompts": 1,
    "progress": 1,
    "model": 2,
    "hooks": 3,
    "profiling": 4,
    "heads": 5,
    "prope": 5,
    "theory": 6,
    "dynamics": 6,
    "survey": 6,
    "plots": 7,
    "figures": 8,
    "report": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("ropescope",) + (parts[:-1] if parts[-1] == "__init__" else parts))


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """Module -> the ropescope modules it imports (anywhere in the file, functions included)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ropescope"):
                found.add(node.module)
                for alias in node.names:  # "from ropescope import theory" names a module
                    candidate = f"{node.module}.{alias.name}"
                    if (PACKAGE / Path(*candidate.split(".")[1:])).with_suffix(".py").exists():
                        found.add(candidate)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("ropescope")}
        graph[name] = found - {"ropescope"} if name != "ropescope" else found
    return graph


def test_every_wing_has_a_stage():
    wings = {_wing(m) for m in _imports()}
    assert wings <= set(STAGES), sorted(wings - set(STAGES))


def test_imports_run_down_the_pipeline_only():
    upward = []
    for module, imported in _imports().items():
        here = _wing(module)
        for target in imported:
            there = _wing(target)
            if there == here:
                continue
            if STAGES[there] > STAGES[here] or (STAGES[there] == STAGES[here] and module != "ropescope"):
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_no_import_loop():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph or nxt == "ropescope":
                continue
            if state.get(nxt) == 1:
                pytest.fail("import loop: " + " -> ".join(trail + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for module in graph:
        if module not in state and module != "ropescope":
            visit(module, [])


def _docstring_quick_start() -> str:
    doc = ropescope.__doc__
    block = doc.split("Quick start::", 1)[1].split("\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip()


def test_readme_and_python_page_show_the_package_quick_start():
    """The Python page of the docs shows the package's quick start as it is; the README's six-line
    example is its first lines (in order), so both run as the test below runs the quick start."""
    page = PYTHON_PAGE.read_text(encoding="utf-8")
    assert re.search(r"```python\n(.*?)```", page, re.S).group(1).strip() == _docstring_quick_start()
    readme = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1).strip()
    quick = _docstring_quick_start().split("\n")
    lines = [line for line in readme.split("\n") if line.strip()]
    assert 4 <= len(lines) <= 8
    positions = [quick.index(line) for line in lines]  # ValueError: a README line not in the quick start
    assert positions == sorted(positions)


@pytest.mark.real
def test_quick_start_runs_as_written():
    namespace: dict = {}
    exec(compile(_docstring_quick_start(), "quick start", "exec"), namespace)
    prof, heads, nll = namespace["prof"], namespace["heads"], namespace["nll"]
    assert prof.n_layers == 18 and prof.n_tokens > 0
    assert len(heads.table) == 18 * 4 and 0 < nll < 20
    assert namespace["fig"].axes


def test_version_comes_from_the_installed_package():
    from importlib.metadata import version

    assert ropescope.__version__ == version("ropescope")
