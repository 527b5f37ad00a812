"""The package's shape, checked: layers that follow the data path, no import circle, few upward imports,
and each word of the results vocabulary defined in one place.

``python tests/test_architecture.py`` prints the import graph by layer (docs/architecture.md holds it).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "pytest_medcode"

#: The layers, lowest first: a module may import from its own layer and the ones before it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("pytest_medcode", "api", "vocabulary", "atomic", "paths", "safetext", "redaction",
                    "wordnet")),
    ("codesystems", ("codesystems",)),
    ("dataset", ("dataset",)),
    ("asking", ("asking",)),
    ("scoring", ("scoring",)),
    ("results", ("results",)),
    ("reports", ("reports",)),
    ("runs", ("runs",)),
    ("plugin", ("plugin", "cli")),
    ("testing", ("testing",)),  # test support: a server for tests and perf scripts, outside the data path
)
#: The imports that run from a lower layer back up, and why each is there.
UPWARD: dict[tuple[str, str], str] = {
    ("asking.coders.verify", "scoring.parsing"): "verify: reads its own model's answer the way scoring will",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(p for p in parts if p != "__init__")
    return name or "pytest_medcode"


def imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (at any depth: a lazy import is still a dependency)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = _imported(ast.parse(path.read_text(encoding="utf-8")), package)
    out.discard(name)
    return out


def _imported(tree: ast.AST, package: str) -> set[str]:
    """The package modules a parsed file imports; ``package``: where its relative imports start."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = (node.module or "").removeprefix("pytest_medcode").lstrip(".") or "pytest_medcode"
                if not (node.module or "").startswith("pytest_medcode"):
                    continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target != "pytest_medcode" else alias.name
                out.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_medcode"):
                    out.add(alias.name.removeprefix("pytest_medcode").lstrip(".") or "pytest_medcode")
    return out


def _exists(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for i, (_, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"{module}: in no layer; add its folder to LAYERS")


def upward(g: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(m, d) for m, deps in g.items() for d in deps if layer_of(d) > layer_of(m)}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle between modules (a package's ``__init__`` re-exporting its own modules aside)."""
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d.startswith(m + "."):  # a package importing its own submodule is not a circle
                continue
            if state.get(d) == 1:
                found.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_imports_run_down_the_layers_but_for_the_named_one() -> None:
    up = upward(graph())
    assert up <= set(UPWARD), f"new upward imports: {sorted(up - set(UPWARD))}"
    assert len(UPWARD) <= 1


def test_the_gate_depends_on_pairing_not_on_run_folders() -> None:
    g = graph()
    assert "results.pairing" in g["results.gate"]
    assert not any(d.startswith(("runs", "reports", "plugin")) for d in g["results.gate"])


def _sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_each_vocabulary_item_is_defined_once() -> None:
    """The similarity metric names, the outcomes and the grouping dimensions appear as literals only in
    vocabulary.py (a module that spells ``"error"`` as an outcome again would drift from it)."""
    patterns = {
        "similarity metric names": re.compile(r"""\(\s*["']meteor["']\s*,\s*["']bertscore["']\s*\)"""),
        "the error outcome": re.compile(r"""outcome["']?\)?\s*[!=]=\s*["']error["']"""),
        "the correct outcome": re.compile(r"""outcome["']?\)?\s*[!=]=\s*["']correct["']"""),
        "grouping dimensions": re.compile(r"""\(\s*["']variant["']\s*,\s*["']temperature["']"""),
        "an outcome defined": re.compile(r"""^\s*_?ERROR\s*=\s*["']error["']""", re.M),
    }
    for what, pattern in patterns.items():
        where = sorted(m for m, text in _sources().items() if pattern.search(text) and m != "vocabulary")
        assert where == [], f"{what} spelled out again in {where}: import it from pytest_medcode.vocabulary"


def test_one_writer_of_the_run_folder() -> None:
    """Only runs/folder.py writes a run folder's files: Parquet writers elsewhere are the code tables' cache."""
    sources = _sources()
    parquet = sorted(m for m, text in sources.items() if re.search(r"ParquetWriter|write_table\(", text))
    assert parquet == ["codesystems.table", "runs.folder"]
    json_files = sorted(m for m, text in sources.items()
                        if re.search(r"summary\.json|report\.md|report\.html", text) and "write_text" in text)
    assert json_files == ["runs.folder"]


TESTS = Path(__file__).resolve().parent
ARCHITECTURE_DOC = TESTS.parent / "docs" / "architecture.md"
TESTED_SECTION = "## Where each module is tested"


def imported_by_tests() -> set[str]:
    """The package modules some test file imports (helpers included)."""
    out: set[str] = set()
    for path in TESTS.glob("*.py"):
        out |= _imported(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def with_logic() -> set[str]:
    """The modules that define a function or a class (not a docstring or a re-export alone)."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {module_name(p) for p in PACKAGE.rglob("*.py")
            if any(isinstance(n, kinds) for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))}


def said_where_tested() -> list[str]:
    """The modules docs/architecture.md's section names (``- `plugin.session`: ...``), in its order."""
    text = ARCHITECTURE_DOC.read_text(encoding="utf-8")
    assert TESTED_SECTION in text, f"docs/architecture.md has no {TESTED_SECTION!r} section"
    section = text.split(TESTED_SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([\w.]+)`", section, flags=re.M)


def test_every_module_with_logic_is_imported_by_a_test_or_said_where_it_is_tested() -> None:
    g, imported, listed = graph(), imported_by_tests(), said_where_tested()
    untested = sorted(with_logic() - imported - set(listed))
    assert untested == [], (f"no test imports {untested}: add a test module that does, or a line to "
                            f"docs/architecture.md's {TESTED_SECTION!r} naming the tests that cover it")
    gone = [m for m in listed if m not in g]
    assert gone == [], f"docs/architecture.md's {TESTED_SECTION!r} names modules that do not exist: {gone}"
    assert listed == sorted(set(listed)), "one line per module, in the graph's name order"


def render() -> str:
    """The import graph by layer, as docs/architecture.md shows it."""
    g = graph()
    lines = []
    for i, (name, _) in enumerate(LAYERS):
        members = sorted(m for m in g if layer_of(m) == i)
        lines.append(f"{name}")
        for m in members:
            deps = sorted(d for d in g[m] if not d.startswith(m + "."))
            marks = [f"{d} (up)" if (m, d) in UPWARD else d for d in deps]
            lines.append(f"  {m}" + (f" -> {', '.join(marks)}" if marks else ""))
    return "\n".join(lines)


def test_the_docs_show_the_import_graph_the_code_has() -> None:
    """docs/architecture.md's graph is regenerated by hand (``python tests/test_architecture.py``): say so
    when it has fallen behind the code."""
    doc = (TESTS.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    shown = doc.split("## Import graph", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert shown.strip() == render().strip(), "regenerate the graph: python tests/test_architecture.py"


if __name__ == "__main__":
    sys.stdout.write(render() + "\n")
