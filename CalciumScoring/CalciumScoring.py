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
    arterySource: str = "segmentation"
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
        self.ui.arterySourceComboBox.addItems(["segmentation"] + self.logic.modelNames())
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecompute)
        self.ui.editArteriesButton.connect("clicked(bool)", lambda: self.onEdit("arteries"))
        self.ui.editCalciumButton.connect("clicked(bool)", lambda: self.onEdit("calcium"))
        self._cancelRequested = False
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
        ready = bool(p and p.inputVolume and (p.arteryGroups or p.arterySource != "segmentation"))
        self.ui.applyButton.enabled = ready
        self.ui.recomputeButton.enabled = bool(p and p.reportTable and p.calcifications)

    def onLoadPhantom(self):
        with slicer.util.tryWithErrorDisplay(_("Could not create the phantom."), waitCursor=True):
            volume, groups = self.logic.loadPhantom()
            self._parameterNode.inputVolume, self._parameterNode.arteryGroups = volume, groups
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    def onApplyButton(self):
        p = self._parameterNode
        arteries = p.arteryGroups if p.arterySource == "segmentation" else p.arterySource
        if p.arterySource != "segmentation":
            with slicer.util.tryWithErrorDisplay(_("Dependencies are missing."), waitCursor=False):
                self.logic.ensureDependencies()
        self._run(lambda: self.logic.process(
            p.inputVolume, arteries, calcium=p.calciumMethod, stumpLengthMm=p.stumpLengthMm,
            aortaMarginMm=p.aortaMarginMm, progress=self._progress, cancel=self._cancelled))

    def onRecompute(self):
        p = self._parameterNode

        def job(overwrite=False):
            return self.logic.recompute(
                p.inputVolume, p.arteryGroups, p.calcifications, p.reportTable,
                p.shortenedArteries, stumpLengthMm=p.stumpLengthMm,
                aortaMarginMm=p.aortaMarginMm, overwriteEdited=overwrite)

        def ask_then_run():
            from CalciumScoringLib.pipeline import EditedError

            try:
                return job()
            except EditedError as exc:
                if slicer.util.confirmYesNoDisplay(f"{exc}\n\nOverwrite it?"):
                    return job(overwrite=True)
                raise

        self._run(ask_then_run)

    def _run(self, job):
        """Run ``job`` with progress, a Cancel button and the result shown; errors displayed."""
        p = self._parameterNode
        self._cancelRequested = False
        self.ui.applyButton.enabled, self.ui.cancelButton.enabled = False, True
        try:
            with slicer.util.tryWithErrorDisplay(_("Processing failed."), waitCursor=True):
                result = job()
                p.shortenedArteries, p.reportTable = result.shortened, result.table
                p.calcifications = result.calcifications
                if result.arteries is not None:
                    p.arteryGroups = result.arteries
                self.logic.showResults(result)
                self.ui.statusLabel.text = "; ".join(result.warnings) or _("Done.")
        finally:
            self.ui.cancelButton.enabled = False
            self._updateApply()

    def onCancel(self):
        self._cancelRequested = True
        self.ui.statusLabel.text = _("Cancelling...")

    def _cancelled(self):
        slicer.app.processEvents()  # keeps the UI responsive and lets Cancel be clicked
        return self._cancelRequested

    def onEdit(self, which):
        p = self._parameterNode
        node = p.arteryGroups if which == "arteries" else p.calcifications
        if node is None:
            slicer.util.errorDisplay(_("Nothing to edit yet: run Apply first."))
            return
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(node)
        editor.setSourceVolumeNode(p.inputVolume)
        self.ui.statusLabel.text = _("Edit, then come back and press Recompute scores.")

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
        self._pipeline = pipeline

    @property
    def pipeline(self):
        """The pipeline, created on first use (after pandas/scikit-image are ensured)."""
        if self._pipeline is None:
            self.ensureDependencies(networks=False)
            from CalciumScoringLib.pipeline import CalciumScoringPipeline

            self._pipeline = CalciumScoringPipeline()
        return self._pipeline

    def getParameterNode(self):
        return CalciumScoringParameterNode(super().getParameterNode())

    def loadPhantom(self, seed=0):
        return self.pipeline.load_phantom(slicer.mrmlScene, seed=seed)

    def ensureDependencies(self, networks=True):
        """Install missing packages on first use, after asking (never at start-up):
        pandas/scikit-image for any processing, PyTorch etc. before a network runs."""
        from CalciumScoringLib import dependencies

        torch_utils = None
        if networks:
            try:
                import PyTorchUtils

                torch_utils = PyTorchUtils.PyTorchUtilsLogic()
            except ImportError:
                pass
        return dependencies.ensure(slicer.util.confirmOkCancelDisplay, slicer.util.pip_install,
                                   torch_utils,
                                   dependencies.REQUIRED if networks else dependencies.CORE)

    def modelNames(self):
        from CalciumScoringLib.models import list_models

        return [m.name for m in list_models()]

    def process(self, volumeNode, arteryGroups, calcium="adaptive", stumpLengthMm=25.0,
                aortaMarginMm=10.0, progress=None, cancel=None):
        """Shorten, find calcification, score.

        ``arteryGroups``: segmentation node or model name; ``calcium``: threshold method,
        model name or calcification segmentation node.  Returns a result with
        ``shortened``, ``calcifications``, ``table`` (nodes) and ``dataframe`` (pandas);
        see CalciumScoringLib.pipeline.
        """
        return self.pipeline.process(volumeNode, arteryGroups, calcium=calcium,
                                     stump_length_mm=stumpLengthMm,
                                     aorta_margin_mm=aortaMarginMm, progress=progress,
                                     cancel=cancel)

    def recompute(self, volumeNode, arteryGroups, calcifications, table=None, shortened=None,
                  stumpLengthMm=25.0, aortaMarginMm=10.0, overwriteEdited=False):
        """Re-score edited segmentations (no network), updating ``table`` and ``shortened``.

        Raises EditedError when ``shortened`` was edited by hand, unless ``overwriteEdited``.
        """
        return self.pipeline.recompute(volumeNode, arteryGroups, calcifications, table=table,
                                       shortened=shortened, stump_length_mm=stumpLengthMm,
                                       aorta_margin_mm=aortaMarginMm,
                                       overwrite_edited=overwriteEdited)

    def showResults(self, result):
        """Switch to a layout with the table and show the score table."""
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetActiveTableID(result.table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()


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
