"""The structure stays as docs/architecture.md draws it.

(a) dvc.yaml declares every file a stage runs: the static import closure of each stage script (plus,
    for per-family stages, the closure of that family's module from the registry) must be covered
    by the stage's deps, or a code change could leave a result DVC calls up to date.
(b) The family lists agree: the registry, config.MODEL_CONFIGS, params.yaml and dvc.yaml.
(c) The library never imports upward and has no import circle.
"""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from facegen.config import MODEL_CONFIGS
from facegen.models import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "facegen"

# Result-neutral plumbing a stage may import without declaring it: a change here cannot change an
# output. Keep this short; anything that touches data, models, numbers or figures is declared.
UNDECLARED_OK = {
    "src/facegen/errors.py",          # exception classes and their messages
    "src/facegen/tracking.py",        # MLflow logging: never read back by a stage
    "src/facegen/pipeline/stage.py",  # argument parsing and one-line error printing
}

# The layer rule (docs/architecture.md): a package may import only from its own layer or below.
# Top-level modules (config, errors, runtime, distributed, artifacts) are the foundation; tracking is
# imported only by pipeline/ and the front ends that load models from MLflow runs.
LAYERS = {
    "data": 1,
    "models": 2,
    "training": 3, "latent": 3, "reporting": 3, "faces": 3,
    "evaluation": 4,
    "comparison": 5,  # deciding between families from recorded runs: specs, noise, decisions, the report's model
    "trained": 5,  # using trained models outside the pipeline (load, photos, cached directions)
    "pipeline": 6, "ci": 6, "explore": 6,
    "cli": 7,      # the `facegen` command, whose `explore` subcommand starts the explorer
}
FOUNDATION = {"config", "errors", "runtime", "distributed", "artifacts", "__init__"}
TRACKING_USERS = {"pipeline", "cli", "trained", "explore"}  # who may import tracking (MLflow)


def _module_file(name: str) -> Path | None:
    path = SRC / name.replace(".", "/")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


@cache
def imports(path: Path) -> frozenset[Path]:
    """facegen modules ``path`` imports anywhere (function-level imports too), except under
    ``if TYPE_CHECKING:`` (annotations only); importing ``a.b.c`` also runs ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for n in ast.walk(block)}
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("facegen"):
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("facegen")]
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {f for i in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:i])))}
    return frozenset(found)


def closure(*starts: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = list(starts)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += imports(path)
    return seen


def _expand(value: object, key: str, item: dict) -> object:
    if isinstance(value, str):
        value = value.replace("${key}", key)
        return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), value)
    if isinstance(value, list):
        return [_expand(v, key, item) for v in value]
    if isinstance(value, dict):
        return {_expand(k, key, item): _expand(v, key, item) for k, v in value.items()}
    return value


@cache
def dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def dvc_families() -> dict[str, dict]:
    (families,) = [v["families"] for v in dvc()["vars"] if "families" in v]
    return families


def stages() -> dict[str, dict]:
    """dvc.yaml's stages with ``foreach`` over ``${families}`` expanded (``name@family``)."""
    out = {}
    for name, stage in dvc()["stages"].items():
        if "foreach" in stage:
            assert stage["foreach"] == "${families}", f"{name}: only foreach over ${{families}} is expanded here"
            for family, item in dvc_families().items():
                out[f"{name}@{family}"] = _expand(stage["do"], family, item)
        else:
            out[name] = stage
    return out


def _dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_file_a_stage_runs_is_a_declared_dependency(name):
    stage = stages()[name]
    script = re.search(r"python (\S+\.py)", stage["cmd"]).group(1)
    starts = [ROOT / script]
    if "@" in name:  # a per-family stage also runs its family's module (the registry imports it by name)
        module = FAMILIES[name.split("@")[1]].split(":")[0]
        starts.append(_module_file(module))
    deps = _dep_paths(stage)
    run = sorted(p.relative_to(ROOT).as_posix() for p in closure(*starts))
    missing = [p for p in run if not _covered(p, deps) and p not in UNDECLARED_OK
               and not (p.endswith("__init__.py") and not (ROOT / p).read_text().strip())]
    assert not missing, f"dvc.yaml stage {name} runs {missing} but does not list them under deps"


def test_declared_code_dependencies_exist():
    for name, stage in stages().items():
        for dep in _dep_paths(stage):
            if dep.startswith(("src/", "stages/")):
                assert (ROOT / dep).exists(), f"dvc.yaml stage {name} depends on missing {dep}"


def test_family_lists_agree():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    registry, configs = set(FAMILIES), set(MODEL_CONFIGS)
    assert registry == configs, f"models.FAMILIES {sorted(registry)} != config.MODEL_CONFIGS {sorted(configs)}"
    assert set(params["models"]) == registry, "params.yaml models: lists other families than the registry"
    assert set(dvc_families()) == registry, "dvc.yaml vars.families lists other families than the registry"
    report_deps = _dep_paths(dvc()["stages"]["report"])
    for family in registry:
        for needed in (f"metrics/{family}.json", f"reports/{family}"):
            assert needed in report_deps, f"dvc.yaml report stage does not depend on {needed}"


def _package(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_no_upward_imports():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = _package(path)
        for target in imports(path):
            theirs = _package(target)
            if theirs == mine or theirs in FOUNDATION:
                continue
            if theirs == "tracking":
                if mine not in TRACKING_USERS:
                    upward.append(f"{path.relative_to(SRC)} -> tracking (only {', '.join(sorted(TRACKING_USERS))})")
                continue
            if LAYERS.get(theirs, 0) >= LAYERS.get(mine, 0):
                upward.append(f"{path.relative_to(SRC)} -> {target.relative_to(SRC)}")
    assert not upward, "imports against the layer rule:\n" + "\n".join(upward)


def test_no_import_circles():
    """A depth-first search over module imports; any back edge is a circle."""
    graph = {p: [t for t in imports(p) if t != p] for p in PACKAGE.rglob("*.py")}
    state: dict[Path, int] = {}
    circles = []

    def visit(node: Path, stack: list[Path]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                # importing a package's __init__ from inside the package is how Python works, not a circle
                if not (nxt.name == "__init__.py" and node.is_relative_to(nxt.parent)):
                    circles.append(" -> ".join(p.relative_to(SRC).as_posix() for p in stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(circles)
