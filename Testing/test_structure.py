"""Structure: .ui files load and hold every widget the module code names; CMake lists
every script and resource; the Lib packages never import slicer (except MRML adapters).
Import circles are checked in test_import_graph.py."""

import ast
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["CalciumScoring", "ArteryShortening"]
#: the MRML adapter layer: the scene stage and the files that write scenes
MRML_ADAPTERS = {"CalciumScoringLib/scene", "CalciumScoringLib/cohort/export_scene.py",
                 "CalciumScoringLib/cohort/export_nnunet.py", "ArteryShorteningLib/mrml_logic.py"}


def _ui_names(path):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QWidget

    app = QApplication.instance() or QApplication([])
    f = QFile(str(path))
    assert f.open(QFile.ReadOnly)
    widget = QUiLoader().load(f)
    f.close()
    assert widget is not None, f"{path} does not load"
    names = {w.objectName() for w in widget.findChildren(QWidget)}
    params = {w.property("SlicerParameterName") for w in widget.findChildren(QWidget)} - {None}
    return names, params, app


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_has_every_widget_the_module_uses(module):
    names, params, _ = _ui_names(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    code = (ROOT / module / f"{module}.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert used and used <= names, f"missing in .ui: {sorted(used - names)}"
    # every SlicerParameterName is a field of the parameter node class
    tree = ast.parse(code)
    fields = {n.target.id for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
              and c.name.endswith("ParameterNode") for n in c.body if isinstance(n, ast.AnnAssign)}
    assert params and params <= fields, f"unknown parameters in .ui: {sorted(params - fields)}"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_script_and_resource(module):
    cm = (ROOT / module / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", module)
    scripts = {p.relative_to(ROOT / module).as_posix()
               for p in (ROOT / module).rglob("*.py") if "__pycache__" not in p.parts}
    resources = {p.relative_to(ROOT / module).as_posix()
                 for p in (ROOT / module / "Resources").rglob("*") if p.is_file()}
    missing = sorted(f for f in scripts | resources if f not in cm)
    assert not missing, f"not listed in {module}/CMakeLists.txt (would not be installed): {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_lib_algorithms_never_import_slicer(module):
    lib = ROOT / module / f"{module}Lib"
    for p in lib.rglob("*.py"):
        rel = p.relative_to(ROOT / module).as_posix()
        if any(rel == a or rel.startswith(a + "/") for a in MRML_ADAPTERS):
            continue
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) \
                else [getattr(node, "module", "") or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "slicer" or n.startswith("slicer.") for n in names), p


def test_wheel_carries_the_module_resources(tmp_path):
    """`pip install .` (headless cohorts) gets the same colour table and bundled models as
    Slicer: every file of CalciumScoring/Resources/{ColorTables,Models} is in the wheel."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", str(ROOT), "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    res = ROOT / "CalciumScoring" / "Resources"
    wanted = {"CalciumScoringLib/Resources/" + p.relative_to(res).as_posix()
              for sub in ("ColorTables", "Models") for p in (res / sub).rglob("*") if p.is_file()}
    assert any(n.endswith(".safetensors") for n in wanted)
    assert wanted <= names, f"missing from the wheel: {sorted(wanted - names)}"
