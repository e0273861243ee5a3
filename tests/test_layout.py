"""The layout shows the flow: lab.store ← lab.present ← {lab.report, dashboards}, and no package
imports its way back. The import graph is read from the source with ``ast`` (every ``import``,
including those inside functions, since a lazy import is still a dependency), then checked for
cycles between packages and for the imports the design forbids; a fresh interpreter confirms
that importing the presentation code loads none of them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("lab", "dashboards")



def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of lab and dashboards: dotted name -> (file, whether it is a package's __init__)."""
    found = {}
    for top in TOP:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = modules()


def _imported(name: str, path: Path, is_package: bool):
    """The dotted names a module imports, relative imports resolved."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from lab.present import load` imports the module lab.present.load
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def import_graph() -> dict[str, set[str]]:
    """Module -> the lab/dashboards modules it imports (an attribute's module where a name is not one)."""
    graph = {}
    for name, (path, is_package) in MODULES.items():
        targets = set()
        for target in _imported(name, path, is_package):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


GRAPH = import_graph()


def package(module: str) -> str:
    """The unit a module belongs to: dashboards; a subpackage of lab (lab.store); or a top-level module of lab (lab.cli)."""
    parts = module.split(".")
    return parts[0] if parts[0] == "dashboards" else ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], set(), [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def reachable(start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def within(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def test_the_graph_sees_the_presentation_packages():
    assert {"lab.present.load", "lab.present.figures.updates", "lab.report.content", "dashboards.data"} <= set(MODULES)
    assert "lab.present.load" in GRAPH["lab.report.content"] and "lab.present.load" in GRAPH["dashboards.data"]


def package_cycles() -> set[frozenset[str]]:
    """The cycles of the graph whose nodes are packages (an edge where any module imports another's)."""
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        units.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    return cycles(units)


def test_no_cycles_between_packages():
    assert not [sorted(c) for c in package_cycles()]


@pytest.mark.parametrize("prefix", ["lab.present", "lab.report", "lab.store", "dashboards"])
def test_no_module_cycles_in_the_store_or_the_presentation(prefix):
    assert not [sorted(c) for c in cycles(GRAPH) if any(m in c for m in within(prefix))]


@pytest.mark.parametrize("source, forbidden", [
    ("dashboards", ("lab.report", "dashboards.cli", "lab.cli")),  # the app never imports the command serving it
    ("lab.report", ("dashboards", "dashboards.cli", "lab.cli")),
    ("lab.present", ("dashboards", "lab.report", "dashboards.cli", "lab.cli")),
    ("lab.store", ("dashboards", "lab.report", "lab.present")),
])
def test_forbidden_imports_are_absent_even_indirectly(source, forbidden):
    offenders = {}
    for module in within(source):
        bad = sorted(t for t in reachable(module) if any(t == f or t.startswith(f + ".") for f in forbidden))
        if bad:
            offenders[module] = bad
    assert not offenders


@pytest.mark.parametrize("package_name, forbidden", [
    ("lab.present", ("dashboards", "lab.report", "streamlit")),
    ("lab.report", ("dashboards", "streamlit")),
])
def test_importing_a_package_loads_nothing_it_must_not(package_name, forbidden):
    names = [m for m in within(package_name)]
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {('dashboards', 'streamlit')!r} "
            f"or m == 'lab.report' or m.startswith('lab.report.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]


# The flow: checkpoints (reading) → engine (units, executors) → probes (pure) → store (only the driver
# writes). Reading knows nothing of probes, probes nothing of files or the store.
FORBIDDEN = {
    "lab.checkpoints": ("lab.probes", "lab.engine", "lab.store", "lab.present", "lab.report", "dashboards"),
    "lab.probes": ("lab.checkpoints", "lab.engine", "lab.store", "lab.present", "lab.report", "dashboards", "lab.cli"),
    "lab.store": ("lab.checkpoints", "lab.engine", "lab.present", "lab.report", "dashboards"),
    "lab.sources": ("lab.checkpoints", "lab.kernels", "lab.probes", "lab.engine", "lab.store"),
    "lab.deltas": ("lab.checkpoints", "lab.kernels", "lab.probes", "lab.engine", "lab.store"),
}


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_comes_before_it(prefix):
    bad = sorted((m, t) for m in within(prefix) for t in GRAPH[m] if t.startswith(FORBIDDEN[prefix]))
    assert not bad


def test_no_module_cycles_anywhere():
    """Not one module cycle, packages' ``__init__`` included: ``lab/probes/__init__.py`` imports every
    probe module, so no probe (nor the registry) may import the package back."""
    assert not [sorted(c) for c in cycles(GRAPH)]


# Kernels (lab.kernels: array functions on plain numbers and arrays) sit below everything that uses
# them: the probes, merge, squeeze, the fine-tuned MPS layout and the engine.
KERNEL_USERS = ("lab.probes", "lab.engine", "lab.store", "lab.checkpoints", "lab.present", "lab.report", "dashboards",
                "lab.merge", "lab.squeeze", "lab.finetune", "lab.cli")


def test_kernels_import_none_of_their_users_even_indirectly():
    bad = {m: sorted(t for t in reachable(m) if t.startswith(KERNEL_USERS)) for m in within("lab.kernels")}
    assert within("lab.kernels.spectrum") and not {m: t for m, t in bad.items() if t}


# Importing lab.probes (or any module below it: Python runs the package's __init__ first) registers
# every probe; merge, squeeze and fine-tuning use the kernels instead. Only the token windows of the
# activation probes (lab.probes.windows), which merge's evaluation runs on, are shared.
PROBE_FREE = ("lab.merge", "lab.squeeze", "lab.finetune")


@pytest.mark.parametrize("prefix", PROBE_FREE)
def test_merge_squeeze_and_finetune_import_no_probe_but_the_windows(prefix):
    bad = sorted((m, t) for m in within(prefix) for t in GRAPH[m]
                 if t.startswith("lab.probes") and t != "lab.probes.windows")
    assert within(prefix) and not bad


def test_importing_merge_squeeze_and_finetune_registers_no_probe():
    """The graph's word checked in a fresh interpreter: every module of merge, squeeze and fine-tuning
    that reaches no lab.probes module in the graph loads none when imported."""
    names = [m for p in PROBE_FREE for m in within(p) if not any(t.startswith("lab.probes") for t in reachable(m))]
    assert "lab.merge.adapters" in names and "lab.squeeze.compress" in names and "lab.finetune.mps_layout" in names
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'lab.probes' or m.startswith('lab.probes.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# The engine runs probes it finds in the registry (planning, execution, a worker's warm-up importing
# the package); every array function it needs itself (memo, norms, controls) is a kernel.
ENGINE_PROBE_ENTRIES = ("lab.probes", "lab.probes.registry", "lab.probes.options")


def test_the_engine_uses_the_probes_only_through_the_registry():
    bad = sorted((m, t) for m in within("lab.engine") for t in GRAPH[m]
                 if t.startswith("lab.probes") and t not in ENGINE_PROBE_ENTRIES)
    assert within("lab.engine.execute") and not bad
