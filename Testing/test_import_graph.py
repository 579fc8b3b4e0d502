"""Imports point one way: no import circle among the project's modules and scripts, the
stages of CalciumScoringLib in one order, and the desktop-only module files name only
what the Lib packages hold (they cannot be imported here, so a moved name would break
them unseen)."""

import ast
import importlib

import pytest
from conftest import ROOT
from import_graph import cycles, project_graph, stage_graph, unresolved

#: the stages of CalciumScoringLib in the order data flows; each imports only earlier ones
STAGES = ["phantoms", "segmentation", "scoring", "qc", "validation", "scene", "cohort"]
#: shared pieces every stage may import (they import no stage)
SHARED = ["imagecheck", "errors", "resources", "dependencies"]


@pytest.fixture(scope="module")
def graph():
    return project_graph(ROOT)


def test_no_import_circle_among_modules_and_scripts(graph):
    assert len(graph) > 60, sorted(graph)  # the graph really holds the project
    assert "training/train_models" in graph and "CalciumScoringLib.segmentation.engine" in graph
    assert cycles(graph) == []


def test_every_project_import_resolves():
    """Scripts and desktop-only module files are not all imported by the tests: a module
    path they name must exist all the same."""
    assert unresolved(ROOT) == []


def test_stages_import_one_way(graph):
    sg = stage_graph(graph)
    assert cycles(sg) == []
    lib = "CalciumScoringLib."
    stages = sorted(s[len(lib):] for s in sg if s.startswith(lib) and "." not in s[len(lib):])
    assert sorted(STAGES + SHARED) == stages, stages  # a new stage or module is placed here
    for i, stage in enumerate(STAGES):
        allowed = {lib + s for s in STAGES[:i] + SHARED} | {"CalciumScoringLib"}
        used = {d for d in sg[lib + stage] if d.startswith("CalciumScoringLib")}
        assert used <= allowed, f"{stage} imports a later stage: {sorted(used - allowed)}"
    for shared in SHARED:
        assert not {d for d in sg[lib + shared] if d.startswith(lib)}, shared


def test_the_checker_finds_a_circle(tmp_path):
    """The check can fail: two modules importing each other (one lazily, inside a
    function, as the old inference <-> nnunet circle did) and two scripts."""
    pkg = tmp_path / "pkg" / "Lib"
    (pkg / "stage_a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stage_a" / "__init__.py").write_text("")
    (pkg / "stage_a" / "one.py").write_text("from ..two import x\n")
    (pkg / "two.py").write_text("def f():\n    from .stage_a import one\nx = 1\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "a.py").write_text("import b\n")
    (tmp_path / "tools" / "b.py").write_text("from a import main\n")
    g = project_graph(tmp_path, packages={"Lib": "pkg/Lib"}, module_files={}, folders=("tools",))
    assert sorted(cycles(g)) == [["Lib.stage_a.one", "Lib.two"], ["tools/a", "tools/b"]]
    (tmp_path / "tools" / "c.py").write_text("from Lib.stage_a.gone import x\n")
    assert unresolved(tmp_path, packages={"Lib": "pkg/Lib"}, module_files={},
                      folders=("tools",)) == [("tools/c", "Lib.stage_a.gone")]
    assert sorted(cycles(stage_graph(g, "Lib"))) == [["Lib.stage_a", "Lib.two"], ["tools/a", "tools/b"]]


@pytest.mark.parametrize("module", ["CalciumScoring/CalciumScoring.py",
                                    "ArteryShortening/ArteryShortening.py"])
def test_module_files_import_names_that_exist(module):
    tree = ast.parse((ROOT / module).read_text())
    checked = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "CalciumScoringLib", "ArteryShorteningLib"):
            mod = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(mod, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"), f"{module}: {node.module}.{alias.name}"
                checked += 1
    assert checked >= 5
    if module.startswith("ArteryShortening"):
        # attributes the module's Logic reads off the lazily imported mrml_logic
        from ArteryShorteningLib import mrml_logic

        code = (ROOT / module).read_text()
        for name in set(__import__("re").findall(r"_mrml\(\)\.(\w+)", code)):
            assert hasattr(mrml_logic, name), name
