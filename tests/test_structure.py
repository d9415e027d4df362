"""The package's shape, checked on every run so that later work cannot undo it.

- no import cycle between the package's modules, imports inside functions counted;
- no private name (``_x``) imported from another subpackage;
- no name imported from a module that does not define it (a re-export shim), except from a
  subpackage's lazy face (its ``__init__``);
- no module ``__getattr__`` outside the lazy faces (no classes built on first use);
- at most 4 modules at the top level besides ``__init__``, ``__main__`` and ``errors``;
- no torch import from any subpackage's ``__init__``; no module over 600 lines;
- the import-linter contracts in ``pyproject.toml`` (layers, independence) kept;
- no function over 80 lines, and no ``raise ValueError(`` (a user's bad value is a
  ``BadParameterError``, which still is a ``ValueError``).
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import wavdiff_utils

PACKAGE = Path(wavdiff_utils.__file__).resolve().parent
NAME = PACKAGE.name
MAX_TOP_MODULES = 4
MAX_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()
TREES = {name: ast.parse(p.read_text(encoding="utf-8")) for name, p in MODULES.items()}


def _target(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``import from`` names, or None outside the package."""
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[:len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    if node.module and (node.module == NAME or node.module.startswith(NAME + ".")):
        return node.module
    return None


def _imports(module: str):
    """``(line, target module, imported name)`` for every import of the package's own modules,
    at any depth (functions included)."""
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.ImportFrom):
            target = _target(module, node)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield node.lineno, (sub if sub in MODULES else target), alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME + "."):
                    yield node.lineno, alias.name, ""


def _defined(module: str) -> set[str]:
    names = set()
    for node in TREES[module].body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_counting_imports_inside_functions():
    graph = {m: {t for _, t, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # the root package's lazy table names modules as strings; its one real import is errors
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_imported_across_subpackages():
    bad = [f"{m}:{line} imports {name} from {t}" for m in MODULES for line, t, name in _imports(m)
           if name.startswith("_") and not name.startswith("__")
           and _subpackage(m) != _subpackage(t)]
    assert bad == []


def test_no_reexport_shims():
    """A name is imported from the module that defines it, or from a package's lazy face."""
    bad = []
    for m in MODULES:
        for line, t, name in _imports(m):
            if not name or t not in MODULES or MODULES[t].name == "__init__.py" \
                    or t.endswith(f".{name}"):             # a module imported by name
                continue
            if name not in _defined(t):
                bad.append(f"{m}:{line} imports {name} from {t}, which does not define it")
    assert bad == []


def test_no_module_getattr_outside_the_lazy_faces():
    bad = [m for m, tree in TREES.items() if MODULES[m].name != "__init__.py"
           and any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)]
    assert bad == []


def test_few_modules_at_the_top_level():
    top = sorted(p.stem for p in PACKAGE.glob("*.py")
                 if p.stem not in ("__init__", "__main__", "errors"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_subpackage_faces_import_no_torch_and_stay_lazy():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and not n.level}
        assert "torch" not in imported, init
        assert imported <= {"lazy_loader"}, (init, imported)
    code = ("import sys, wavdiff_utils, wavdiff_utils.dataset, wavdiff_utils.train, "
            "wavdiff_utils.jobs, wavdiff_utils.views, wavdiff_utils.captioning; "
            "print('torch' in sys.modules, len([m for m in sys.modules "
            "if m.startswith('wavdiff_utils.') and m.count('.') > 1]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "0"]


def test_every_face_name_resolves():
    import importlib

    for init in sorted(PACKAGE.glob("*/__init__.py")):
        face = importlib.import_module(f"{NAME}.{init.parent.name}")
        for name in face.__all__:
            assert getattr(face, name) is not None, (face.__name__, name)


def test_no_module_over_600_lines():
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_import_linter_contracts_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is not installed (requirements.txt lists import-linter)")
    out = subprocess.run([exe], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def test_no_function_over_80_lines():
    long = [f"{m}.{n.name}: {n.end_lineno - n.lineno + 1} lines" for m, tree in TREES.items()
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_no_plain_value_error_raised():
    plain = [f"{m}:{n.lineno}" for m, tree in TREES.items() for n in ast.walk(tree)
             if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call)
             and isinstance(n.exc.func, ast.Name) and n.exc.func.id == "ValueError"]
    assert plain == []
