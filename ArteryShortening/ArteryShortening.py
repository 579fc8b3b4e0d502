"""ArteryShortening: trim side arteries to a stump and cut the aorta (desktop Slicer module).

Thin wiring only: the algorithm is ArteryShorteningLib.shortening, the node handling
ArteryShorteningLib.mrml_logic; both are tested outside Slicer on real MRML.
"""

from typing import Annotated, Optional, Union

import slicer
import vtk
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

GROUP_CHOICES = ["aorta", "iliac", "mesenteric", "renal", "(ignore)"]


class ArteryShortening(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Artery Shortening")
        self.parent.categories = ["Quantification"]
        self.parent.contributors = ["VascularCalcium developers (VascularCalcium project)"]
        self.parent.helpText = _(
            "Trims every side artery (iliac, mesenteric, renal) to a stump of fixed length from "
            "the aorta and cuts the aorta above the highest side artery, so that patients are "
            "compared on the same anatomy. Input: artery-group segmentation or label map. "
            "Documentation: the README of the VascularCalcium extension "
            "(<a href=\"https://github.com/vascular-calcium/SlicerVascularCalcium#readme\">README</a>).")
        self.parent.acknowledgementText = _("Implements the published shortening post-processing.")


#: what the shortening reads and writes: a segmentation or a label map
GroupsNode = Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode]


@parameterNodeWrapper
class ArteryShorteningParameterNode:
    inputNode: Optional[GroupsNode]
    outputNode: Optional[GroupsNode]
    reportTable: Optional[slicer.vtkMRMLTableNode]
    stumpLengthMm: Annotated[float, WithinRange(5, 100)] = 25.0
    aortaMarginMm: Annotated[float, WithinRange(0, 50)] = 10.0
    aortaDilations: Annotated[int, WithinRange(1, 10)] = 2
    stumpMergeDistanceMm: Annotated[float, WithinRange(0, 100)] = 25.0
    growth: Annotated[str, Choice(["geodesic", "dilation"])] = "geodesic"
    inPlace: bool = False


class ArteryShorteningWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ArteryShortening.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ArteryShorteningLogic()
        self.ui.mappingTable.setHorizontalHeaderLabels([_("Segment"), _("Group")])
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateMappingTable)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        """Bind the GUI to ``parameterNode`` (None: unbind), as Slicer's module template does."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApply)
            self._updateApply()

    def _updateApply(self, *args):
        self.ui.applyButton.enabled = bool(self._parameterNode and self._parameterNode.inputNode)

    def updateMappingTable(self, node=None):
        """One row per segment: its name and a group choice, pre-filled with the guess."""
        import qt

        table = self.ui.mappingTable
        table.setRowCount(0)
        if node is None or not node.IsA("vtkMRMLSegmentationNode"):
            return
        for row, (sid, name, group) in enumerate(self.logic.segmentGroupGuesses(node)):
            table.insertRow(row)
            item = qt.QTableWidgetItem(name)
            item.setData(qt.Qt.UserRole, sid)
            table.setItem(row, 0, item)
            combo = qt.QComboBox()
            combo.addItems(GROUP_CHOICES)
            combo.setCurrentText(group or "(ignore)")
            table.setCellWidget(row, 1, combo)

    def currentMapping(self):
        """Segment id -> group from the mapping table (``None`` for ignored segments)."""
        import qt

        table = self.ui.mappingTable
        mapping = {}
        for row in range(table.rowCount):
            sid = table.item(row, 0).data(qt.Qt.UserRole)
            group = table.cellWidget(row, 1).currentText
            mapping[sid] = None if group == "(ignore)" else group
        return mapping or None

    def onApplyButton(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Shortening failed."), waitCursor=True):
            out, table, res = self.logic.process(
                p.inputNode, p.outputNode, inPlace=p.inPlace, mapping=self.currentMapping(),
                stump_length_mm=p.stumpLengthMm,
                aorta_margin_mm=p.aortaMarginMm, aorta_dilations=p.aortaDilations,
                stump_merge_distance_mm=p.stumpMergeDistanceMm, growth=p.growth)
            p.outputNode, p.reportTable = out, table
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            self.ui.statusLabel.text = "; ".join(res.warnings) or _("Done.")


class ArteryShorteningLogic(ScriptedLoadableModuleLogic):
    """Console: ``ArteryShorteningLogic().process(getNode('Segmentation'), stump_length_mm=35)``."""

    def getParameterNode(self):
        return ArteryShorteningParameterNode(super().getParameterNode())

    def segmentGroupGuesses(self, segmentationNode):
        """``[(segment id, name, group or None)]``: the mapping the table starts from (MRML
        only: nothing to install for it)."""
        from CalciumScoringLib.scene.groups import segment_group_guesses

        return segment_group_guesses(segmentationNode)

    @staticmethod
    def _mrml():
        """ArteryShorteningLib.mrml_logic, imported on first use after its packages are ensured
        (pandas and scikit-image are not part of every Slicer; nothing installs at start-up)."""
        from CalciumScoringLib import dependencies

        dependencies.ensure(slicer.util.confirmOkCancelDisplay, slicer.util.pip_install,
                            packages=dependencies.CORE)
        from ArteryShorteningLib import mrml_logic

        return mrml_logic

    def process(self, inputNode, outputNode=None, inPlace=False, referenceVolume=None,
                mapping=None, **params):
        """Returns ``(outputNode, reportTableNode, result)``; see ArteryShorteningLib.mrml_logic."""
        return self._mrml().ArteryShorteningMRMLLogic().process(
            inputNode, outputNode, reference_volume=referenceVolume, mapping=mapping,
            in_place=inPlace, **params)


class ArteryShorteningTest(ScriptedLoadableModuleTest):
    """Runs in desktop Slicer; the same checks run outside Slicer in Testing/ (pytest)."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        from CalciumScoringLib.phantoms.generator import make_phantom
        from CalciumScoringLib.scene import nodes as mrml_nodes
        from CalciumScoringLib.scene import terms as segment_terms

        ph = make_phantom(3, spacing=(1.0, 1.0, 1.0), fov="vessels")
        vol = mrml_nodes.volume_node_from_image(slicer.mrmlScene, ph.ct, "phantom")
        seg = mrml_nodes.segmentation_node_from_labelmap(
            slicer.mrmlScene, ph.groups, segment_terms.group_segments(), vol, "groups")
        out, table, res = ArteryShorteningLogic().process(seg, referenceVolume=vol)
        self.assertIsNot(out, seg)
        self.assertGreater(table.GetNumberOfRows(), 3)
        self.delayDisplay("ArteryShortening test passed")
