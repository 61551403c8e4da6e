"""dvc.yaml lists, for every stage, each pipeline module the stage's code imports (directly or through other
pipeline modules), so that ``dvc repro`` re-runs a stage whenever code it runs has changed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.project import ROOT


def _module_file(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(path: Path) -> set[str]:
    """The ``pipeline.*`` modules ``path`` imports at any level (functions' lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            found.add(node.module)
            found |= {
                f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}").is_file()
            }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
    return {m for m in found if _module_file(m).is_file() and m != "pipeline"}


def _closure(module: str) -> set[Path]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += _imports(_module_file(current))
    return {_module_file(m).relative_to(ROOT) for m in seen}


def _stages() -> list[tuple[str, str, list[str]]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split("python -m ")[1].split()[0]
        out.append((name, module, [d for d in body["deps"] if d.startswith("pipeline")]))
    return out


@pytest.mark.parametrize(("stage", "module", "deps"), _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_cover_the_code_it_runs(stage, module, deps):
    covered = {Path(d) for d in deps}
    missing = {
        path
        for path in _closure(module)
        if path not in covered and not any(folder in path.parents for folder in covered)
    }
    missing.discard(Path("pipeline/__init__.py"))
    assert not missing, f"dvc.yaml stage {stage} runs {sorted(map(str, missing))} without listing it in deps"


@pytest.mark.parametrize(("stage", "module", "deps"), _stages(), ids=[s[0] for s in _stages()])
def test_no_stage_imports_another_stage(stage, module, deps):
    """What two stages share lives in a package below them, so editing one stage re-runs that stage alone."""
    stage_modules = {m for _, m, _ in _stages()} - {module}
    reached = {str(p.with_suffix("")).replace("/", ".") for p in _closure(module)}
    assert not reached & stage_modules, f"{stage} imports stage module(s) {sorted(reached & stage_modules)}"


def _figure_paths(entries) -> set[str]:
    """The figures/*.png files among a stage's outs or deps (plain paths or ``{path: options}``)."""
    names = (next(iter(e)) if isinstance(e, dict) else e for e in entries or [])
    return {n.rsplit("/", 1)[1] for n in names if "/figures/" in n and n.endswith(".png")}


def test_every_figure_is_declared_once_and_listed_where_it_is_drawn_and_read():
    """pipeline.reporting.figures names each picture once; dvc.yaml lists each among its stage's outputs and the
    report's dependencies, and no other figure."""
    from pipeline.reporting.figures import FIGURES

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    drawn = {name: _figure_paths(stage.get("outs")) for name, stage in stages.items()}
    declared = {f.file: f.stage for f in FIGURES if f.stage is not None}
    assert len({f.file for f in FIGURES}) == len(FIGURES)
    assert {file: stage for stage, files in drawn.items() for file in files} == declared
    assert _figure_paths(stages["report"]["deps"]) == set(declared)
