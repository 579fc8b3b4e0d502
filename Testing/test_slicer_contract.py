"""The modules' parameter classes and .ui files against Slicer's real parameterNodeWrapper
of the releases users run (v5.10.0 and v5.12.3, from ``../shared/slicer-python``), under
PySide6 (see ``slicer_gui_harness.py``): ``connectGui`` binds every widget without error,
no selector loses the node types its .ui gives it, the choices a combo box needs are there
after binding, and values travel both ways.  Skips with a message without ``../shared``.
"""

import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT

pytest.importorskip("PySide6")
harness = pytest.importorskip("slicer_gui_harness")

MODULES = {
    "CalciumScoring": ("CalciumScoringParameterNode", "CalciumScoring/Resources/UI/CalciumScoring.ui"),
    "ArteryShortening": ("ArteryShorteningParameterNode",
                         "ArteryShortening/Resources/UI/ArteryShortening.ui"),
}


@pytest.fixture(params=harness.RELEASES)
def release(request):
    if not (harness.SLICER_PYTHON / request.param).is_dir():
        pytest.skip(f"{harness.SLICER_PYTHON / request.param} not present (Slicer's Python code "
                    "of the release; set VASCULAR_CALCIUM_SLICER_PYTHON)")
    return harness.load_release(request.param)


def declared_node_types(ui_path):
    """``{selector name: [node types]}`` as the .ui file declares them."""
    out = {}
    for w in ET.parse(ui_path).iter("widget"):
        if w.get("class") == "qMRMLNodeComboBox":
            types = [s.text for p in w.findall("property") if p.get("name") == "nodeTypes"
                     for s in p.iter("string")]
            out[w.get("name")] = types
    return out


def bound(module, release):
    import slicer

    cls_name, ui_rel = MODULES[module]
    mod = harness.module_file(ROOT / module / f"{module}.py")
    scene = slicer.vtkMRMLScene()
    param = getattr(mod, cls_name)(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    widget, ui = harness.load_ui(ROOT / ui_rel)
    return mod, scene, param, widget, ui


@pytest.mark.parametrize("module", sorted(MODULES))
def test_connect_gui_binds_without_error_and_keeps_node_types(module, release):
    mod, scene, param, widget, ui = bound(module, release)
    if hasattr(mod, "fillChoices"):
        mod.fillChoices(ui, ["artery-groups"], ["arteries-calcium"])
    tag = param.connectGui(ui)
    declared = declared_node_types(ROOT / MODULES[module][1])
    assert declared
    for name, types in declared.items():
        assert sorted(getattr(ui, name).nodeTypes) == sorted(types), name  # none lost
    param.disconnectGui(tag)


def test_calcium_scoring_choices_and_values_travel(release):
    import slicer

    mod, scene, param, widget, ui = bound("CalciumScoring", release)
    mod.fillChoices(ui, ["artery-groups"], ["arteries-calcium"])
    tag = param.connectGui(ui)
    combo = ui.arterySourceComboBox
    items = [combo.itemText(i) for i in range(combo.count)]
    assert items == ["segmentation", "artery-groups"]  # the model names stay after binding
    methods = [ui.calciumMethodComboBox.itemText(i) for i in range(ui.calciumMethodComboBox.count)]
    assert methods[0] == "lumen_relative" and "arteries-calcium" in methods
    binding = mod.ChoiceBinding(param, {"arterySource": combo,
                                        "calciumMethod": ui.calciumMethodComboBox})
    param.arterySource = "artery-groups"
    assert combo.currentText == "artery-groups"
    ui.calciumMethodComboBox.currentIndex = methods.index("arteries-calcium")
    assert param.calciumMethod == "arteries-calcium"
    param.stumpLengthMm = 30.0
    assert ui.stumpLengthSlider.value == 30.0
    vol = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    param.inputVolume = vol
    assert ui.inputVolumeSelector.currentNode() is vol
    binding.disconnect()
    param.disconnectGui(tag)
    param.arterySource = "segmentation"
    assert combo.currentText == "artery-groups"  # no longer bound
    assert slicer is not None


def test_artery_shortening_input_accepts_segmentations_and_label_maps(release):
    mod, scene, param, widget, ui = bound("ArteryShortening", release)
    param.connectGui(ui)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lab = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    for node in (seg, lab):
        param.inputNode = node
        assert ui.inputSelector.currentNode() is node
    with pytest.raises(Exception):
        param.inputNode = scene.AddNewNodeByClass("vtkMRMLTableNode")
