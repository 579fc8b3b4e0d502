"""Headless MRML: a real scene with Slicer's module logics, outside the Slicer application.

Used by the command line (scene bundles, .seg.nrrd files) and by the tests; inside
desktop Slicer it is never used.

slicer-core provides the real MRML scene, nodes, storage and module logics, but not
the application: ``slicer.app``, ``slicer.mrmlScene`` and ``slicer.modules`` are
missing (they come from the Qt application in desktop Slicer).  This shim builds
exactly those three from real objects, as desktop Slicer wires them at start-up:

- a real ``vtkMRMLScene`` as ``slicer.mrmlScene``;
- a real ``vtkSlicerApplicationLogic`` whose colour logic has added the default
  colour nodes, registered as "Colors";
- real volumes, segmentations, tables, plots, subject-hierarchy, data and
  terminologies logics, exposed as ``slicer.modules.<name>.logic()``;
- a remote-IO/data-IO manager with a cache folder, which ``ReadFromMRB`` needs;
- ``slicer.app`` answers only ``applicationLogic()``, ``mrmlScene()`` and
  ``temporaryPath``.

Nothing here imitates MRML behaviour; every object is the real C++ class.
"""

import tempfile
import types

import slicer

LOGICS = {
    "volumes": "vtkSlicerVolumesLogic",
    "segmentations": "vtkSlicerSegmentationsModuleLogic",
    "tables": "vtkSlicerTablesLogic",
    "plots": "vtkSlicerPlotsLogic",
    "subjecthierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "data": "vtkSlicerDataModuleLogic",
}


class Harness:
    """One real scene with its application and module logics, installed into ``slicer``."""

    def __init__(self, cache_dir=None, quiet=True):
        import vtk

        if quiet:  # complaints about desktop-only resources (colour files) are noise here
            vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
        self.cache_dir = cache_dir or tempfile.mkdtemp(prefix="vc-mrml-cache-")
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        colors = slicer.vtkSlicerColorLogic()
        colors.SetMRMLApplicationLogic(self.app_logic)
        colors.SetMRMLScene(self.scene)
        colors.AddDefaultColorNodes()
        if quiet:
            vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
        self.app_logic.SetModuleLogic("Colors", colors)
        self.logics = {"colors": colors}
        self.remote_io = slicer.vtkMRMLRemoteIOLogic()
        self.remote_io.SetMRMLScene(self.scene)
        self.data_io = slicer.vtkDataIOManagerLogic()
        self.data_io.SetMRMLApplicationLogic(self.app_logic)
        self.data_io.SetMRMLScene(self.scene)
        self.remote_io.AddDataIOToScene()
        self.scene.GetCacheManager().SetRemoteCacheDirectory(self.cache_dir)
        for name, cls in LOGICS.items():
            logic = getattr(slicer, cls)()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        self.install()

    def install(self):
        """Point ``slicer.mrmlScene``, ``slicer.app`` and ``slicer.modules`` at this harness."""
        slicer.mrmlScene = self.scene
        slicer.app = types.SimpleNamespace(
            applicationLogic=lambda: self.app_logic,
            mrmlScene=lambda: self.scene,
            temporaryPath=self.cache_dir,
        )
        slicer.modules = types.SimpleNamespace(**{
            name: types.SimpleNamespace(logic=(lambda lg=lg: lg))
            for name, lg in self.logics.items()})

    def close(self):
        self.scene.Clear(1)
