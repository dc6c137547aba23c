"""The package's shape, checked: rooms in layers, no import cycle, small modules.

The import graph is read from the source (``ast``), with every import
counted wherever it stands (at module level or inside a function: an
import moved into a function still ties the two modules together), and
with the packages a module's import runs implicitly (importing
``skbottleneck.cache._keys`` from another room first runs
``skbottleneck/cache/__init__.py``).
The root ``skbottleneck/__init__.py`` is left out: it only re-exports, lazily.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "skbottleneck"

#: The rooms, lowest first: a module may import its own room and lower ones.
#: The data flows images -> extraction (engine, CNN) -> cache / store ->
#: chunks -> heads; chunks sits below the store because the store deals its
#: rows with the one block shuffle (chunks reads stores by duck typing).
#: The front ends (report, CLI) sit on top.
RANKS = {
    "utils": 0,
    "fileio": 0,  # the one home of file I/O: atomic writes, the lock, positional reads
    "feature_space": 1,  # which model computed features: what store, heads and model files check
    "_keras": 1,
    "images": 1,
    "backbones": 2,
    "datasets": 2,
    "remote": 2,  # image bytes from URLs, object storage and tar shards
    "chunks": 3,
    "cache": 4,
    "store": 5,
    "extraction": 6,
    "heads": 7,
    "similarity": 7,  # nearest stored images: a store searched with the extraction's CNN
    "distributed": 8,
    "report": 9,
    "_model_files": 9,  # saving and loading fitted pipelines (skops, joblib)
    "cli": 10,
    "__main__": 10,
}
#: Lines of code a module may have (docstrings, comments and blank lines not
#: counted): a room sized by its concept, not by its documentation.
MAX_CODE_LINES = 400
#: Package modules that importing a head may load (``from skbottleneck import
#: IncrementalClassifier``): no runner, Dask stage or store writer.
HEAD_IMPORT_BUDGET = 25
#: Data, not code.
LONG_DATA_MODULES = {"skbottleneck.backbones._imagenet_classes"}


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module, is_package, level, name):
    if level == 0:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(modules):
    """module -> set of skbottleneck modules it imports (explicitly or implicitly)."""
    graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                if not name.startswith("skbottleneck"):
                    continue
                while name and name not in modules:  # an attribute, not a module
                    name = name.rpartition(".")[0]
                # the packages that importing it runs first (but the root,
                # and the packages the importing module is itself inside)
                parts = name.split(".")
                targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        targets = {t for t in targets if not (module == t or module.startswith(t + "."))}
        graph[module] = targets
    graph.pop("skbottleneck", None)
    return graph


def _room(module):
    return module.split(".")[1]


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return _imports(_modules())


def test_the_import_graph_has_no_cycle(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_rooms_import_only_lower_rooms(graph):
    unranked = sorted({_room(m) for m in graph} - set(RANKS))
    assert not unranked, f"give these rooms a rank in RANKS: {unranked}"
    upward = sorted(
        f"{m} -> {t}" for m, targets in graph.items() for t in targets
        if RANKS[_room(t)] > RANKS[_room(m)]
    )
    assert upward == []


def code_lines(source):
    """Lines of code of a module: not blank, not a comment, not in a docstring."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in docstrings)


def test_code_lines_are_counted_without_docstrings_and_comments():
    source = 'def f():\n    """Doc.\n\n    More.\n    """\n    # a comment\n\n    return 1\n'
    assert code_lines(source) == 2


def test_no_module_is_long():
    long = sorted(
        f"{name}: {n} lines of code" for name, path in _modules().items()
        if name not in LONG_DATA_MODULES and (n := code_lines(path.read_text())) > MAX_CODE_LINES
    )
    assert long == []


def test_importing_a_head_loads_no_runner_dask_stage_or_store_writer():
    """``from skbottleneck import IncrementalClassifier`` in a fresh interpreter."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from skbottleneck import IncrementalClassifier, KerasMLPClassifier\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('skbottleneck'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert len(loaded) <= HEAD_IMPORT_BUDGET, loaded
    heavy = [m for m in loaded if m.startswith(("skbottleneck.extraction", "skbottleneck.store",
                                                "skbottleneck.distributed", "skbottleneck.cache"))]
    assert heavy == []
