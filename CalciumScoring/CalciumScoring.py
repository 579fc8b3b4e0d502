"""CalciumScoring: vascular calcification scoring in abdominal CTA (desktop Slicer module).

Thin wiring only; behaviour lives in CalciumScoringLib (pure algorithms and the
MRML adapters, tested outside Slicer on real MRML) and ArteryShorteningLib.
"""

from typing import Annotated, Optional

import slicer
import vtk
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from CalciumScoringLib.pipeline import CalciumScoringPipeline


class CalciumScoring(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Calcium Scoring")
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["ArteryShortening"]
        self.parent.contributors = ["VascularCalcium team"]
        self.parent.helpText = _(
            "Automated vascular calcification scoring in abdominal CT angiography: artery "
            "groups (aorta, iliac, mesenteric, renal), shortening to comparable anatomy, "
            "calcification burden, clusters and classical scores. Research use only.")
        self.parent.acknowledgementText = _("Implements published methods; see the README.")


@parameterNodeWrapper
class CalciumScoringParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    arteryGroups: Optional[slicer.vtkMRMLSegmentationNode]
    calciumMethod: Annotated[str, Choice(["adaptive", "fixed", "display_8bit", "otsu"])] = "adaptive"
    shortenedArteries: Optional[slicer.vtkMRMLSegmentationNode]
    calcifications: Optional[slicer.vtkMRMLSegmentationNode]
    reportTable: Optional[slicer.vtkMRMLTableNode]
    referenceGroups: Optional[slicer.vtkMRMLSegmentationNode]
    referenceCalcium: Optional[slicer.vtkMRMLSegmentationNode]
    stumpLengthMm: Annotated[float, WithinRange(5, 100)] = 25.0
    aortaMarginMm: Annotated[float, WithinRange(0, 50)] = 10.0


class CalciumScoringWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CalciumScoring.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CalciumScoringLogic()
        self.ui.calciumMethodComboBox.addItems(["adaptive", "fixed", "display_8bit", "otsu"])
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadPhantom)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self._parameterNode = self.logic.getParameterNode()
        self._parameterNode.connectGui(self.ui)
        self.addObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                         self._updateApply)
        self._updateApply()

    def _updateApply(self, *args):
        p = self._parameterNode
        self.ui.applyButton.enabled = bool(p and p.inputVolume and p.arteryGroups)

    def onLoadPhantom(self):
        with slicer.util.tryWithErrorDisplay(_("Could not create the phantom."), waitCursor=True):
            volume, groups = self.logic.loadPhantom()
            self._parameterNode.inputVolume, self._parameterNode.arteryGroups = volume, groups
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    def onApplyButton(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Processing failed."), waitCursor=True):
            result = self.logic.process(p.inputVolume, p.arteryGroups,
                                        calcium=p.calciumMethod,
                                        stumpLengthMm=p.stumpLengthMm,
                                        aortaMarginMm=p.aortaMarginMm,
                                        progress=self._progress)
            p.shortenedArteries, p.reportTable = result.shortened, result.table
            p.calcifications = result.calcifications
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(result.table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            self.ui.statusLabel.text = "; ".join(result.warnings) or _("Done.")

    def onValidate(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Validation failed."), waitCursor=True):
            if not (p.referenceGroups and p.referenceCalcium and p.calcifications):
                raise ValueError(_("Run Apply first, then choose the reference arteries and "
                                   "calcification of this case."))
            table = self.logic.validate(p.inputVolume, p.referenceGroups, p.referenceCalcium,
                                        p.arteryGroups, p.calcifications)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def _progress(self, fraction, stage):
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = stage
        slicer.app.processEvents()


class CalciumScoringLogic(ScriptedLoadableModuleLogic):
    """Console use::

        logic = slicer.util.getModuleLogic("CalciumScoring")  # or CalciumScoringLogic()
        result = logic.process(getNode("CTA"), getNode("Segmentation"))
        result.dataframe  # pandas
    """

    def __init__(self, pipeline=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.pipeline = pipeline or CalciumScoringPipeline()

    def getParameterNode(self):
        return CalciumScoringParameterNode(super().getParameterNode())

    def loadPhantom(self, seed=0):
        return self.pipeline.load_phantom(slicer.mrmlScene, seed=seed)

    def process(self, volumeNode, arteryGroupsNode, calcium="adaptive", stumpLengthMm=25.0,
                aortaMarginMm=10.0, progress=None):
        """Shorten, find calcification (threshold method name or segmentation node), score.

        Returns a result with ``shortened``, ``calcifications``, ``table`` (nodes) and
        ``dataframe`` (pandas); see CalciumScoringLib.pipeline.
        """
        return self.pipeline.process(volumeNode, arteryGroupsNode, calcium=calcium,
                                     stump_length_mm=stumpLengthMm,
                                     aorta_margin_mm=aortaMarginMm, progress=progress)


    def validate(self, volumeNode, referenceGroups, referenceCalcium, automatedGroups,
                 automatedCalcium):
        """Per-group Dice and score differences against a reference: a new table node."""
        return self.pipeline.validate(volumeNode, referenceGroups, referenceCalcium,
                                      automatedGroups, automatedCalcium)[0]


class CalciumScoringTest(ScriptedLoadableModuleTest):
    """Runs in desktop Slicer; the same checks run outside Slicer in Testing/ (pytest)."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        logic = CalciumScoringLogic()
        volume, groups = logic.loadPhantom(seed=1)
        result = logic.process(volume, groups)
        self.assertGreater(result.table.GetNumberOfRows(), 0)
        self.delayDisplay("CalciumScoring test passed")
