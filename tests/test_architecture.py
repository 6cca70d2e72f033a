"""The package's structure, read from its source with ``ast`` (nothing imported): no import cycle
between the modules of ``estimators`` (lazy imports inside functions count), no module reaching
into another's private names, and the modules that must start without TensorFlow do.

``python tests/test_architecture.py`` prints the who-imports-whom table of docs/architecture.md.
"""

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "estimators"


def module_name(path):
    """``estimators/sweep/__init__.py`` -> ``estimators.sweep``; ``estimators/a/b.py`` ->
    ``estimators.a.b``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules():
    """{module name: path} for every module of the package."""
    paths = sorted(ROOT.joinpath(PACKAGE).rglob("*.py"))
    return {module_name(p): p for p in paths if "__pycache__" not in p.parts}


MODULES = package_modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


@dataclass(frozen=True)
class Import:
    """One import of an estimators module by another: where, and whether inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


def owning_module(dotted):
    """The longest known module that ``dotted`` starts with (``estimators.a.b.name`` ->
    ``estimators.a.b``), or None outside the package."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def absolute_base(module, node):
    """The module an ``ImportFrom`` names, with relative imports (``from .x import y``) resolved."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def parents(tree):
    """{node: its parent} over the tree."""
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def inside_function(node, parent_of):
    while node in parent_of:
        node = parent_of[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
    return False


def lazy_export_targets(tree):
    """Module names in a PEP 562 re-export table: string values of a module-level dict named
    ``_EXPORTS`` (``{"estimate": "estimators.estimator"}``), imported by ``__getattr__``."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value
            # __getattr__ imports them on first access: lazily.


def imports_of(module, tree=None):
    """Every import of another estimators module by ``module``: ``import estimators.x``,
    ``from estimators import x`` (x a submodule, else the package itself), ``from estimators.x
    import y`` (y a submodule, else ``estimators.x``), relative imports, and a package's lazy
    re-export table. A module reached through ``from estimators import name`` where ``name`` is a
    re-exported function is an edge to ``estimators``, whose table holds the edge onwards."""
    tree = TREES[module] if tree is None else tree
    parent_of = parents(tree)
    found = []

    def add(target, node, lazy=None):
        if target and target != module:
            lazy = inside_function(node, parent_of) if lazy is None else lazy
            found.append(Import(module, target, node.lineno, lazy))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(owning_module(alias.name), node)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(module, node)
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in MODULES else owning_module(base), node)
    for value in lazy_export_targets(tree):
        add(owning_module(value.value), value, lazy=True)
    return found


IMPORTS = [imp for module in MODULES for imp in imports_of(module)]


def graph():
    edges = {module: set() for module in MODULES}
    for imp in IMPORTS:
        edges[imp.source].add(imp.target)
    return edges


def find_cycle(edges):
    """One cycle as a list of modules [a, b, ..., a], or None (depth-first search)."""
    state = {}  # module -> "open" (on the current path) or "done"
    path = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def describe(cycle):
    """The cycle with the file and line of each import in it."""
    steps = []
    for source, target in zip(cycle, cycle[1:], strict=False):
        where = next(i for i in IMPORTS if i.source == source and i.target == target)
        path = MODULES[source].relative_to(ROOT)
        lazy = " (lazily)" if where.lazy else ""
        steps.append(f"{source} -> {target} at {path}:{where.line}{lazy}")
    return "\n".join(steps)


def test_the_import_graph_sees_every_kind_of_import():
    """The graph is not empty by accident: it sees module-level, lazy, from-package and
    re-exported imports."""
    edges = {(i.source, i.target, i.lazy) for i in IMPORTS}
    assert ("estimators.results", "estimators.files", False) in edges
    assert ("estimators.estimator", "estimators.methods", False) in edges
    assert ("estimators", "estimators.estimator", True) in edges  # the PEP 562 table
    assert ("estimators.summary", "estimators.summary.cells", False) in edges
    assert any(i.source == "estimators.cli" and i.lazy for i in IMPORTS)


PLANTED = """
import estimators.sweep.plan
import estimators.methods as registry
from estimators import methods, files
from estimators.summary import summarize
from . import store
from .plan import Given
from estimators.methods import _format


def later():
    from estimators.record import RunRecord

    return registry._parse_string, estimators.sweep.plan._given, store._x, methods.REGISTRY
"""


def test_the_detectors_on_planted_code():
    """Absolute, relative, from-package and lazy imports become edges; private names imported or
    read through a module alias are caught; a cycle is found and a DAG passes."""
    tree = ast.parse(PLANTED)
    found = {
        (i.target.removeprefix("estimators."), i.lazy)
        for i in imports_of(PACKAGE + ".sweep.cell", tree)
    }
    assert found == {
        ("sweep.plan", False),
        ("methods", False),
        ("files", False),
        ("summary", False),
        ("sweep.store", False),
        ("record", True),
    }
    assert [text for _, text in private_uses(PACKAGE + ".sweep.cell", tree)] == [
        "from estimators.methods import _format",
        "estimators.sweep.plan._given",
        "registry._parse_string",
        "store._x",
    ]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    """No chain of imports leads from a module back to itself, lazy imports included: every layer
    can be loaded (and understood) without the layers above it."""
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle:\n" + describe(cycle)


# ----------------------------------------------------------------------------- private names


def is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_aliases(module, tree):
    """{local name: estimators module} bound by the imports of ``module`` (anywhere in it):
    ``import estimators.x`` binds ``estimators``, ``import estimators.x as m`` binds ``m``,
    ``from estimators import x`` binds ``x`` when x is a submodule."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(module, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


def dotted(node):
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def private_uses(module, tree=None):
    """(line, text) for each private name of another estimators module that ``module`` imports
    (``from estimators.a import _b``) or reads (``a._b`` with ``a`` an imported module)."""
    tree = TREES[module] if tree is None else tree
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = absolute_base(module, node)
            if (base == PACKAGE or base.startswith(PACKAGE + ".")) and base != module:
                for alias in node.names:
                    if is_private(alias.name) and f"{base}.{alias.name}" not in MODULES:
                        uses.append((node.lineno, f"from {base} import {alias.name}"))
    aliases = module_aliases(module, tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not is_private(node.attr):
            continue
        chain = dotted(node.value)
        if chain is None or chain.split(".")[0] not in aliases:
            continue
        head, *rest = chain.split(".")
        target = ".".join([aliases[head], *rest])
        if target in MODULES and target != module:
            uses.append((node.lineno, f"{chain}.{node.attr}"))
    return sorted(set(uses))


def private_offenders():
    return [
        f"{MODULES[module].relative_to(ROOT)}:{line}: {text}"
        for module in MODULES
        for line, text in private_uses(module)
    ]


PRIVATE_OFFENDERS = private_offenders()


@pytest.mark.xfail(
    bool(PRIVATE_OFFENDERS),
    reason="modules use other modules' private names: " + "; ".join(PRIVATE_OFFENDERS),
    strict=True,
)
def test_no_module_uses_another_modules_private_names():
    """A name starting with an underscore is its module's own: no other module imports it or
    reads it as ``module._name``."""
    assert not PRIVATE_OFFENDERS, "private names used across modules:\n" + "\n".join(
        PRIVATE_OFFENDERS
    )


# ---------------------------------------------------------------------------- no TensorFlow

# Import statements that must leave TensorFlow unloaded: the light layers (registry, run record,
# results, summary, report, compare, CLI), the presets at import, the executors and the Dask
# executor, and the package root's lazy exports.
WITHOUT_TENSORFLOW = [
    "import estimators.methods",
    "import estimators.record",
    "import estimators.results",
    "import estimators.files",
    "import estimators.summary",
    "import estimators.report",
    "import estimators.report.document, estimators.report.markdown, estimators.report.html",
    "import estimators.report.figures, estimators.report.sections, estimators.report.write",
    "import estimators.sandwich",
    "import estimators.comparison",
    "import estimators.presets",
    "import estimators.cli",
    "import estimators.sweep.executors, estimators.sweep.store",
    "import estimators.distributed",
    "import estimators.manifests, estimators.environment, estimators.tables",
    "from estimators import Summary, summarize",
]


@pytest.mark.parametrize("statement", WITHOUT_TENSORFLOW)
def test_light_modules_do_not_load_tensorflow(statement):
    """Each statement, run alone in a fresh interpreter, leaves TensorFlow unloaded: ``estimators
    list``, ``report`` and ``compare`` start at once, and so do the sweep's executors."""
    code = f"{statement}; import sys; assert 'tensorflow' not in sys.modules, 'loads TensorFlow'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"{statement}: {done.stderr.strip()[-2000:]}"


# --------------------------------------------------------------------------------- the table


def table():
    """Markdown rows: module, the estimators modules it imports at import time, and lazily."""
    rows = ["| module | imports | lazily |", "|---|---|---|"]
    for module in MODULES:
        eager = sorted({i.target for i in IMPORTS if i.source == module and not i.lazy})
        lazy = sorted({i.target for i in IMPORTS if i.source == module and i.lazy} - set(eager))

        def short(names):
            return ", ".join(f"`{n.removeprefix(PACKAGE + '.')}`" for n in names) or "—"

        rows.append(f"| `{module}` | {short(eager)} | {short(lazy)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    print(describe(find_cycle(graph())) if find_cycle(graph()) else "no cycle")
    print("\n".join(PRIVATE_OFFENDERS) or "no private names used across modules")
