"""CalciumScoring: vascular calcification scoring in abdominal CTA (desktop Slicer module).

Thin wiring only; behaviour lives in CalciumScoringLib (pure algorithms and the
MRML adapters, tested outside Slicer on real MRML) and ArteryShorteningLib.
"""

from typing import Annotated, Optional

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
    calciumMethod: str = "lumen_relative"  # a threshold method or a calcification model's name
    shortenedArteries: Optional[slicer.vtkMRMLSegmentationNode]
    calcifications: Optional[slicer.vtkMRMLSegmentationNode]
    reportTable: Optional[slicer.vtkMRMLTableNode]
    referenceGroups: Optional[slicer.vtkMRMLSegmentationNode]
    referenceCalcium: Optional[slicer.vtkMRMLSegmentationNode]
    stumpLengthMm: Annotated[float, WithinRange(5, 100)] = 25.0
    aortaMarginMm: Annotated[float, WithinRange(0, 50)] = 10.0
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"


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
        self.ui.calciumMethodComboBox.addItems(["lumen_relative", "adaptive", "fixed", "display_8bit", "otsu"]
                                               + self.logic.modelNames("calcification"))
        self.ui.arterySourceComboBox.addItems(["segmentation"] + self.logic.modelNames("aorta"))
        self.ui.deviceComboBox.addItems(["auto", "cpu", "cuda"])
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecompute)
        self.ui.editArteriesButton.connect("clicked(bool)", lambda: self.onEdit("arteries"))
        self.ui.editCalciumButton.connect("clicked(bool)", lambda: self.onEdit("calcium"))
        self._cancelRequested = False
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadPhantom)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVolumeChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        if getattr(self, "_timer", None) is not None:
            self._cancelRequested = True
            self._timer.stop()
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

    def onVolumeChanged(self, volume):
        """Show the outputs of the last run on this volume (also from a reopened scene)."""
        from CalciumScoringLib.scene.runs import last_run

        run = last_run(volume) if volume is not None else None
        if run is None or self._parameterNode is None:
            return
        p = self._parameterNode
        p.shortenedArteries, p.calcifications, p.reportTable = \
            run["shortened"], run["calcifications"], run["table"]
        if run["arteries"] is not None:
            p.arteryGroups, p.arterySource = run["arteries"], "segmentation"

    def onLoadPhantom(self):
        with slicer.util.tryWithErrorDisplay(_("Could not create the phantom."), waitCursor=True):
            volume, groups = self.logic.loadPhantom()
            self._parameterNode.inputVolume, self._parameterNode.arteryGroups = volume, groups
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    def onApplyButton(self):
        p = self._parameterNode
        arteries = p.arteryGroups if p.arterySource == "segmentation" else p.arterySource
        with slicer.util.tryWithErrorDisplay(_("Could not start."), waitCursor=True):
            if p.arterySource != "segmentation" or p.calciumMethod in self.logic.modelNames():
                self.logic.ensureDependencies()
            job = self.logic.pipeline.prepare(p.inputVolume, arteries, p.calciumMethod,
                                              device=p.device, stump_length_mm=p.stumpLengthMm,
                                              aorta_margin_mm=p.aortaMarginMm)
            self._startBackground(job)

    def onRecompute(self):
        p = self._parameterNode
        from CalciumScoringLib.scene.pipeline import EditedError

        def prepare(overwrite):
            return self.logic.pipeline.prepare(
                p.inputVolume, p.arteryGroups, p.calcifications, shortened=p.shortenedArteries,
                overwrite_edited=overwrite, stump_length_mm=p.stumpLengthMm,
                aorta_margin_mm=p.aortaMarginMm)

        with slicer.util.tryWithErrorDisplay(_("Could not recompute."), waitCursor=True):
            try:
                job = prepare(False)
            except EditedError as exc:
                if not slicer.util.confirmYesNoDisplay(f"{exc}\n\nOverwrite it?"):
                    return
                job = prepare(True)
            self._startBackground(job, p.shortenedArteries, p.reportTable)

    def _startBackground(self, job, shortened=None, table=None):
        """Run the computation in a worker thread; the UI stays responsive (polled by a timer)."""
        import queue
        import threading

        import qt

        self._cancelRequested = False
        self._queue, self._outcome = queue.Queue(), {}
        self._job, self._targets = job, (shortened, table)

        def work():
            try:
                self._outcome["computed"] = self.logic.pipeline.compute(
                    job, progress=lambda f, s: self._queue.put((f, s)),
                    cancel=lambda: self._cancelRequested)
            except BaseException as exc:  # reported on the main thread
                self._outcome["error"] = exc

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        self.ui.applyButton.enabled, self.ui.cancelButton.enabled = False, True
        self.ui.recomputeButton.enabled = False
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._poll)
        self._timer.start()

    def _poll(self):
        while not self._queue.empty():
            self._progress(*self._queue.get())
        if self._thread.is_alive():
            return
        self._timer.stop()
        self.ui.cancelButton.enabled = False
        self._updateApply()
        error = self._outcome.get("error")
        if error is not None:
            self.ui.progressBar.value = 0
            if type(error).__name__ == "Cancelled":
                self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
            else:
                slicer.util.errorDisplay(_("Processing failed: ") + str(error))
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not create the outputs."), waitCursor=True):
            result = self.logic.pipeline.publish(p.inputVolume, self._job, self._outcome["computed"],
                                                 *self._targets)
            p.shortenedArteries, p.reportTable = result.shortened, result.table
            if result.calcifications is not None:
                p.calcifications = result.calcifications
            if result.arteries is not None:
                p.arteryGroups = result.arteries
                p.arterySource = "segmentation"
            self.logic.showResults(result)
            self._progress(1.0, result.status_message or _("Done."))
            if not result.scores_valid:  # the scores stay in the table; the user decides
                self.ui.statusLabel.text = _("CHECK ARTERIES: scores not valid until reviewed.")
                if slicer.util.confirmYesNoDisplay(
                        result.review_message + "\n\n" + _("Open the arteries in Segment Editor?"),
                        windowTitle=_("Check the arteries")):
                    self.onEdit("arteries")

    def onCancel(self):
        self._cancelRequested = True
        self.ui.statusLabel.text = _("Cancelling...")

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
            from CalciumScoringLib.scene.pipeline import CalciumScoringPipeline

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

    def modelNames(self, label=None):
        """Registry names, optionally only the models that output ``label`` (e.g. "aorta")."""
        from CalciumScoringLib.segmentation.models import model_names

        return model_names(label)

    def process(self, volumeNode, arteryGroups, calcium="lumen_relative", stumpLengthMm=25.0,
                aortaMarginMm=10.0, progress=None, cancel=None):
        """Shorten, find calcification, score.

        ``arteryGroups``: segmentation node or model name; ``calcium``: threshold method,
        model name or calcification segmentation node.  Returns a result with
        ``shortened``, ``calcifications``, ``table`` (nodes) and ``dataframe`` (pandas);
        see CalciumScoringLib.scene.pipeline.
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
