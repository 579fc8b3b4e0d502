"""CalciumScoring: vascular calcification scoring in abdominal CTA (desktop Slicer module).

Thin wiring only; behaviour lives in CalciumScoringLib (pure algorithms and the
MRML adapters, tested outside Slicer on real MRML) and ArteryShorteningLib.
"""

import logging
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

from CalciumScoringLib.scene.binding import THRESHOLD_METHODS, ChoiceBinding, fillChoices


class CalciumScoring(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Calcium Scoring")
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["ArteryShortening"]
        self.parent.contributors = ["VascularCalcium developers (VascularCalcium project)"]
        self.parent.helpText = _(
            "Automated vascular calcification scoring in abdominal CT angiography: artery "
            "groups (aorta, iliac, mesenteric, renal), shortening to comparable anatomy, "
            "calcification burden, clusters and classical scores. Research use only. "
            "Apply runs the pipeline as a separate process (Slicer stays responsive; Cancel "
            "stops it). Documentation: see the README of the VascularCalcium extension "
            "(<a href=\"https://github.com/vascular-calcium/SlicerVascularCalcium#readme\">README</a>).")
        self.parent.acknowledgementText = _("Implements published methods; see the README.")



@parameterNodeWrapper
class CalciumScoringParameterNode:
    """The module's parameters.  ``arterySource`` ("segmentation" or a model name) and
    ``calciumMethod`` (a threshold method or a model name) take names only known at run
    time (the model registry), so their combo boxes are bound by ``ChoiceBinding``,
    not by ``connectGui`` (whose combo-box connector needs a fixed ``Choice`` and refills
    the combo from it)."""

    inputVolume: Optional[slicer.vtkMRMLScalarVolumeNode]
    arterySource: str = "segmentation"
    arteryGroups: Optional[slicer.vtkMRMLSegmentationNode]
    calciumMethod: str = "lumen_relative"
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
        self._parameterNodeGuiTag = None
        self._choices = None
        self._run = None
        self._timer = None

    def setup(self):
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CalciumScoring.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CalciumScoringLogic()
        fillChoices(self.ui, self.logic.modelNames("aorta"), self.logic.modelNames("calcification"))
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecompute)
        self.ui.editArteriesButton.connect("clicked(bool)", lambda: self.onEdit("arteries"))
        self.ui.editCalciumButton.connect("clicked(bool)", lambda: self.onEdit("calcium"))
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadPhantom)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVolumeChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._timer = qt.QTimer()
        self._timer.setInterval(300)
        self._timer.connect("timeout()", self._poll)
        self.initializeParameterNode()

    def cleanup(self):
        if self._run is not None:  # the application closes: stop the process
            self._run.cancel()
            self._run = None
        if self._timer is not None:
            self._timer.stop()
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
        """Bind the GUI to ``parameterNode`` (None: unbind), as Slicer's module template
        does; the two run-time combo boxes through ``ChoiceBinding``."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self._choices.disconnect()
            self._choices = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._choices = ChoiceBinding(self._parameterNode, {
                "arterySource": self.ui.arterySourceComboBox,
                "calciumMethod": self.ui.calciumMethodComboBox})
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApply)
            self._updateApply()

    def _updateApply(self, *args):
        p = self._parameterNode
        running = self._run is not None
        ready = bool(p and p.inputVolume and (p.arteryGroups or p.arterySource != "segmentation"))
        self.ui.applyButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.ui.recomputeButton.enabled = bool(p and p.reportTable and p.calcifications) and not running

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
        """Start the pipeline as a separate process (our command line); a timer reads its
        progress; the outputs become new nodes when it finishes."""
        from CalciumScoringLib.dependencies import DependencyError

        p = self._parameterNode
        arteries = p.arteryGroups if p.arterySource == "segmentation" else p.arterySource
        networks = p.arterySource != "segmentation" or p.calciumMethod not in THRESHOLD_METHODS
        try:
            self.logic.ensureDependencies(networks=networks)
        except DependencyError as exc:
            self.ui.statusLabel.text = str(exc)
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start."), waitCursor=True):
            self._run = self.logic.start(p.inputVolume, arteries, p.calciumMethod,
                                         device=p.device, stumpLengthMm=p.stumpLengthMm,
                                         aortaMarginMm=p.aortaMarginMm)
            self._progress(0.0, _("started"))
            self._timer.start()
        self._updateApply()

    def _poll(self):
        run = self._run
        if run is None:
            self._timer.stop()
            return
        state = run.poll()
        self._progress(*run.progress)
        if state == "running":
            return
        self._timer.stop()
        self._run = None
        self._updateApply()
        if state == "failed":
            message, detail = run.error()
            logging.error("Calcium Scoring failed: %s\n%s\n(log: %s)", message, detail, run.log_path)
            self.ui.progressBar.value = 0
            slicer.util.errorDisplay(_("Processing failed: ") + message, detailedText=detail)
            return
        if state != "finished":
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not load the outputs."), waitCursor=True):
            self._showResult(run.load(p.inputVolume, self.logic.pipeline))

    def _showResult(self, result):
        p = self._parameterNode
        p.shortenedArteries, p.reportTable = result.shortened, result.table
        if result.calcifications is not None:
            p.calcifications = result.calcifications
        if result.arteries is not None:
            p.arteryGroups, p.arterySource = result.arteries, "segmentation"
        self.logic.showResults(result)
        self._progress(1.0, result.status_message or _("Done."))
        if not result.scores_valid:  # the scores stay in the table; the user decides
            self.ui.statusLabel.text = _("NOT VALID: ") + (result.status_message or "")
            if result.review_message and slicer.util.confirmYesNoDisplay(
                    result.review_message + "\n\n" + _("Open the arteries in Segment Editor?"),
                    windowTitle=_("Check the arteries")):
                self.onEdit("arteries")

    def onCancel(self):
        if self._run is not None:
            self._run.cancel()
            self._run = None
        self._timer.stop()
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        self._updateApply()

    def onRecompute(self):
        """Re-score edited segmentations: shortening and scoring only (seconds), in Slicer."""
        p = self._parameterNode
        from CalciumScoringLib.scene.pipeline import EditedError

        def run(overwrite):
            return self.logic.recompute(p.inputVolume, p.arteryGroups, p.calcifications,
                                        table=p.reportTable, shortened=p.shortenedArteries,
                                        stumpLengthMm=p.stumpLengthMm,
                                        aortaMarginMm=p.aortaMarginMm, overwriteEdited=overwrite)

        with slicer.util.tryWithErrorDisplay(_("Could not recompute."), waitCursor=True):
            try:
                result = run(False)
            except EditedError as exc:
                if not slicer.util.confirmYesNoDisplay(f"{exc}\n\nOverwrite it?"):
                    return
                result = run(True)
            self._showResult(result)

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
        result = logic.process(getNode("CTA"), getNode("Segmentation"))  # in Slicer's process
        result.dataframe  # pandas
        run = logic.start(getNode("CTA"), "artery-groups")  # a separate process, as Apply
        run.poll(); run.progress; result = run.load(getNode("CTA"))  # when "finished"
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

    def start(self, volumeNode, arteryGroups, calcium="lumen_relative", device="cpu",
              stumpLengthMm=25.0, aortaMarginMm=10.0):
        """The pipeline as a separate process (our command line, Slicer's Python): returns a
        running CalciumScoringLib.scene.external.ExternalRun (``poll()``, ``progress``,
        ``cancel()``, ``load(volumeNode)``).  Slicer stays responsive while it runs."""
        from CalciumScoringLib.scene.external import ExternalRun

        return ExternalRun.start(volumeNode, arteryGroups, calcium,
                                 {"stump_length_mm": stumpLengthMm, "aorta_margin_mm": aortaMarginMm},
                                 device="cpu" if device == "auto" else device,
                                 name=volumeNode.GetName().replace(" ", "_") or "case")

    def ensureDependencies(self, networks=True):
        """Install missing packages on first use, after one consent dialog naming each and
        why (never at start-up): pandas/scikit-image for any processing, PyTorch (through
        the PyTorch extension) and safetensors before a network runs."""
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
        """Shorten, find calcification, score, in Slicer's own process (a network blocks
        Slicer while it runs: use :meth:`start` for a separate process, as Apply does).

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
        df = result.dataframe.set_index("region")
        self.assertEqual(list(df.loc[["aorta", "iliac", "mesenteric", "renal"], "state"]),
                         ["measured"] * 4)
        self.assertGreater(df.loc["aorta", "artery_volume_mm3"], 10000)
        run = logic.start(volume, groups)  # the Apply path: a separate process
        import time

        while run.poll() == "running":
            time.sleep(0.5)
        self.assertEqual(run.state, "finished", run.error())
        external = run.load(volume).dataframe.set_index("region")
        self.assertAlmostEqual(external.loc["combined", "calcium_volume_mm3"],
                               df.loc["combined", "calcium_volume_mm3"], places=3)
        self.delayDisplay("CalciumScoring test passed")
