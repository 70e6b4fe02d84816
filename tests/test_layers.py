"""The package's layers (README "Layout", docs/architecture.md): every import, at module level or inside a function,
points to the same layer or one below it, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "transformer"

# top to bottom; a module's layer is that of the first pattern its path (relative to transformer/) starts with
LAYERS = [
    ("entry points", ["cli.py"]),
    ("applications", ["training/", "serve.py", "export/writer.py", "export/__init__.py", "baselines.py"]),
    ("inference", ["inference.py"]),
    ("objectives", ["objectives/"]),
    ("checkpoint", ["checkpoint.py"]),
    ("configs", ["schema.py"]),
    (
        "building blocks",
        [
            "__init__.py",
            "model.py",
            "loss.py",
            "attention.py",
            "decoding.py",
            "ensemble.py",
            "attend.py",
            "attend_report.py",
            "flops.py",
            "data/",
            "optim.py",
            "metrics.py",
            "hardware.py",
            "export/runtime.py",
            "export/spec.py",
            "hf/",
        ],
    ),  # fmt: skip
    ("leaves", ["config.py", "console.py", "dropout.py", "errors.py"]),
]


def layer(path: Path) -> int:
    """0 for the top layer, len(LAYERS) - 1 for the bottom one."""
    relative = path.relative_to(PACKAGE).as_posix()
    for depth, (_, patterns) in enumerate(LAYERS):
        if any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in patterns):
            return depth
    raise AssertionError(f"transformer/{relative} is in no layer: add it to LAYERS (and to the README's layout)")


def module_file(name: str) -> Path | None:
    """The file of a module `transformer.x.y` (a package's __init__.py), or None when it is not one."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> set[Path]:
    """The package's files that `path` imports, wherever the import statement stands."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from transformer.training import stages` imports the submodule stages
            names = [
                f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")
            ]
            names = names or [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "transformer" and name != "transformer":
                target = module_file(name)
                if target is not None and target != path:
                    found.add(target)
    return found


def graph() -> dict[Path, set[Path]]:
    return {path: imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_points_down_the_layers():
    upward = [
        f"transformer/{src.relative_to(PACKAGE)} ({LAYERS[layer(src)][0]}) imports "
        f"transformer/{dst.relative_to(PACKAGE)} ({LAYERS[layer(dst)][0]})"
        for src, targets in graph().items()
        for dst in sorted(targets)
        if layer(dst) < layer(src)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    edges = graph()
    state: dict[Path, str] = {}
    stack: list[Path] = []

    def visit(node: Path) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                circle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError(" -> ".join(str(p.relative_to(ROOT)) for p in circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node)


def test_the_checker_sees_function_level_and_submodule_imports():
    """The checks above would pass vacuously if imports went unseen."""
    edges = graph()
    cli, stages, train = PACKAGE / "cli.py", PACKAGE / "training" / "stages.py", PACKAGE / "training" / "train.py"
    assert stages in edges[cli]  # `from transformer.training import stages`, inside a function
    assert train in edges[stages]
    assert layer(PACKAGE / "checkpoint.py") > layer(PACKAGE / "inference.py")
