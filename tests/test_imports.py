"""The package's import graph: no loop anywhere (function-level imports included, so none can hide one), the
paper's concept modules never import a backbone family, families import only the shared base below them, and
every module imports on its own in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "loraedit_nb"
CONCEPTS = ("masks", "conditioning", "regimes", "loss", "training", "inference", "evaluation", "lora")
SHARED = ("backbones.base", "backbones.latents", "backbones.weights")  # weights: loading helpers any family uses
FAMILIES = ("backbones.wan", "backbones.hunyuan")


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (top level or inside functions)."""
    mods = modules()
    graph = {}
    for name, f in mods.items():
        pkg = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        if name == "":
            pkg = []
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
                targets = [mod] + [f"{mod}.{a.name}".lstrip(".") for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loraedit_nb"):
                mod = node.module.removeprefix("loraedit_nb").lstrip(".")
                targets = [mod] + [f"{mod}.{a.name}".lstrip(".") for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.removeprefix("loraedit_nb").lstrip(".") for a in node.names
                           if a.name.startswith("loraedit_nb")]
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_graph_reader_sees_lazy_imports_and_finds_loops():
    g = import_graph()
    assert "backbones.base" in g["conditioning"] and "memory" in g["backbones.base"]
    assert "planner" in g["training"]  # a function-level import is an edge too
    assert find_cycle({**g, "memory": g["memory"] | {"inference"}}) is not None  # a planted loop is found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_loop_anywhere_in_the_package():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_concept_modules_import_no_family_and_families_only_the_base():
    g = import_graph()
    below_families = set(SHARED)
    for concept in CONCEPTS:
        bad = {d for d in g[concept] if d.startswith("backbones") and d not in below_families}
        assert not bad, f"{concept} imports {bad}: concept modules use the Adapter interface (backbones.base) only"
    for fam in FAMILIES:
        bad = {d for d in g[fam] if d.startswith("backbones") and d not in below_families} | (
            g[fam] & set(CONCEPTS) - {"masks"})
        assert not bad, f"{fam} imports {bad}: a family imports only backbones.base/latents and helpers below"
    assert not {d for d in g["backbones.base"] | g["backbones.latents"] if d.startswith("backbones")} - {
        "backbones.latents"}


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = ["loraedit_nb" + ("." + m if m else "") for m in modules() if m != "__main__"]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    for k in [k for k in sys.modules if k == 'loraedit_nb' or k.startswith('loraedit_nb.')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module(name)\n"
            "print('ok', len(" + repr(names) + "))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-3000:]
