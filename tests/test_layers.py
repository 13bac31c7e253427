"""The folder is the layer: no petclick module imports a layer above its own (imports inside
functions included), and no two packages import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import petclick
from petclick.core.layers import LAYERS, layer_of

ROOT = Path(petclick.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every petclick module `name` imports (absolute and relative, at any depth)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "petclick")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "petclick":
                found.add(mod)
    return found


MODULES = _modules()


def test_every_package_has_a_layer():
    for name in MODULES:
        layer_of(name)  # raises KeyError for a package missing from LAYERS


def test_no_import_runs_upward():
    upward = []
    for name, path in sorted(MODULES.items()):
        own = layer_of(name)
        for target in sorted(_imports(name, path)):
            if layer_of(target) > own:
                upward.append(f"{name} (layer {own}) imports {target} (layer {layer_of(target)})")
    assert not upward, "\n".join(upward)


def test_no_two_packages_import_each_other():
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        src = name.split(".")[1] if "." in name else "petclick"
        for target in _imports(name, path):
            dst = target.split(".")[1] if "." in target else "petclick"
            if dst != src:
                edges.setdefault(src, set()).add(dst)

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert not cycles, cycles


def test_no_loose_modules_at_the_package_root():
    loose = sorted(p.name for p in ROOT.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py"]


@pytest.mark.parametrize("bad", ["petclick.nowhere.x", "numpy"])
def test_layer_of_rejects_unknown_packages(bad):
    with pytest.raises((KeyError, ValueError)):
        layer_of(bad)


def test_layers_are_disjoint():
    names = [n for layer in LAYERS for n in layer]
    assert len(names) == len(set(names))


def test_no_import_circle_between_modules():
    """No module reaches itself through petclick imports (those inside functions included): a circle
    means a shared name lives in the wrong module. A package's face (__init__) is left out as a
    target: it only hands on names of its own modules."""
    faces = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    edges = {name: {t for t in _imports(name, path) if t in MODULES and t not in faces and t != name}
             for name, path in MODULES.items()}
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)
