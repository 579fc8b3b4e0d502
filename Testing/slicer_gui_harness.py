"""Slicer's real parameterNodeWrapper (from ``../shared/slicer-python``) on real Qt widgets.

Desktop Slicer cannot be installed here.  This harness runs the wrapper's own code of a
Slicer release (v5.10.0 or v5.12.3) under PySide6, with stand-ins only for what that code
imports and PySide6 does not have:

- ``qt``: PySide6's classes, the widgets subclassed so that Qt properties read and write as
  attributes (``combo.currentIndex = 2``), as PythonQt lets Slicer's code do; ``QUiLoader``
  builds these subclasses (and the stand-ins below) from a ``.ui`` file;
- ``ctk``: the CTK widgets the wrapper names, as small Qt widgets with the same API;
- ``slicer``: the real MRML classes of the slicer-core wheel, plus stand-ins of the qMRML
  widgets (``qMRMLNodeComboBox`` keeps ``nodeTypes``, ``currentNode()``,
  ``currentNodeChanged``) and the release's own ``parameterNodeWrapper`` and ``i18n``.

``load_release(version)`` returns the release's ``slicer.parameterNodeWrapper`` module;
``load_ui(path)`` a widget tree and a namespace of its named children, as
``slicer.util.loadUI`` and ``childWidgetVariables`` give them.
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLICER_PYTHON = Path(os.environ.get("VASCULAR_CALCIUM_SLICER_PYTHON",
                                    ROOT.parent / "shared" / "slicer-python"))
RELEASES = ("v5.10.0", "v5.12.3")

_state = {}


def _pythonqt(cls):
    """A subclass of the Qt class ``cls`` whose Qt properties read and write as attributes."""
    from PySide6 import QtCore

    def prop_index(obj, name):
        return QtCore.QObject.metaObject(obj).indexOfProperty(name)

    class PQ(cls):
        def __getattribute__(self, name):
            if not name.startswith("_") and name not in ("property", "setProperty"):
                if name == "name":
                    return QtCore.QObject.objectName(self)
                try:
                    index = prop_index(self, name)
                except RuntimeError:
                    index = -1
                if index >= 0:
                    return QtCore.QObject.property(self, name)
            return super().__getattribute__(name)

        def __setattr__(self, name, value):
            if not name.startswith("_") and prop_index(self, name) >= 0:
                QtCore.QObject.setProperty(self, name, value)
                return
            super().__setattr__(name, value)

    PQ.__name__ = PQ.__qualname__ = cls.__name__
    return PQ


def _qt():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtGui, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    qt = types.ModuleType("qt")
    for mod in (QtCore, QtGui, QtWidgets):
        for name in dir(mod):
            if name.startswith("Q"):
                setattr(qt, name, getattr(mod, name))
    widgets = {}
    for name in ("QWidget", "QComboBox", "QCheckBox", "QPushButton", "QLineEdit", "QLabel",
                 "QTextEdit", "QSlider", "QSpinBox", "QDoubleSpinBox", "QProgressBar",
                 "QTableWidget", "QGroupBox", "QRadioButton", "QToolButton", "QFrame"):
        widgets[name] = _pythonqt(getattr(QtWidgets, name))
        setattr(qt, name, widgets[name])
    qt.Signal = QtCore.Signal
    qt.app = app
    return qt, widgets


def _standins(qt, widgets):
    """The ctk and qMRML widgets the wrapper and the modules' .ui files name."""
    from PySide6 import QtCore, QtWidgets

    QWidget, QComboBox, QPushButton = widgets["QWidget"], widgets["QComboBox"], widgets["QPushButton"]
    QCheckBox, QLineEdit = widgets["QCheckBox"], widgets["QLineEdit"]

    class ctkSliderWidget(QWidget):
        valueChanged = QtCore.Signal(float)

        def __init__(self, parent=None):
            super().__init__(parent)
            self._v, self._min, self._max, self._step, self._dec = 0.0, 0.0, 99.0, 1.0, 2

        def _get_value(self):
            return self._v

        def _set_value(self, v):
            v = min(max(float(v), self._min), self._max)
            if v != self._v:
                self._v = v
                self.valueChanged.emit(v)

        value = property(_get_value, _set_value)
        minimum = property(lambda s: s._min, lambda s, v: setattr(s, "_min", float(v)))
        maximum = property(lambda s: s._max, lambda s, v: setattr(s, "_max", float(v)))
        singleStep = property(lambda s: s._step, lambda s, v: setattr(s, "_step", float(v)))
        decimals = property(lambda s: s._dec, lambda s, v: setattr(s, "_dec", int(v)))

    class qMRMLNodeComboBox(QWidget):
        currentNodeChanged = QtCore.Signal(object)
        currentNodeIDChanged = QtCore.Signal(str)

        def __init__(self, parent=None):
            super().__init__(parent)
            self.nodeTypes, self._node, self._scene = [], None, None
            self.noneEnabled = self.addEnabled = self.removeEnabled = True
            self.noneDisplay, self.selectNodeUponCreation = "None", True

        def setMRMLScene(self, scene):
            self._scene = scene

        def mrmlScene(self):
            return self._scene

        def currentNode(self):
            return self._node

        def setCurrentNode(self, node):
            if node is not None and self.nodeTypes and not any(node.IsA(t) for t in self.nodeTypes):
                raise TypeError(f"{node.GetClassName()} is not one of {self.nodeTypes}")
            if node is not self._node:
                self._node = node
                self.currentNodeChanged.emit(node)

    class qMRMLWidget(QWidget):
        mrmlSceneChanged = QtCore.Signal(object)

        def setMRMLScene(self, scene):
            for child in self.findChildren(QtWidgets.QWidget):
                if hasattr(child, "setMRMLScene") and child is not self:
                    child.setMRMLScene(scene)

    class ctkCollapsibleButton(QWidget):
        collapsed = False
        text = ""

    class ctkCheckablePushButton(QPushButton):
        pass

    class ctkComboBox(QComboBox):
        pass

    class ctkCheckBox(QCheckBox):
        pass

    class ctkPathLineEdit(QLineEdit):
        currentPathChanged = QtCore.Signal(str)

    ctk = types.ModuleType("ctk")
    for cls in (ctkSliderWidget, ctkCollapsibleButton, ctkCheckablePushButton, ctkComboBox,
                ctkCheckBox, ctkPathLineEdit):
        setattr(ctk, cls.__name__, cls)
    for name in ("ctkDirectoryButton", "ctkColorPickerButton", "ctkDoubleSpinBox",
                 "ctkRangeWidget", "ctkDoubleSlider", "ctkDoubleRangeSlider",
                 "ctkMatrixWidget", "ctkCollapsibleGroupBox"):
        setattr(ctk, name, type(name, (QWidget,), {}))  # named by the wrapper; not in our .ui
    mrml_widgets = {"qMRMLNodeComboBox": qMRMLNodeComboBox, "qMRMLWidget": qMRMLWidget}
    for name in ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget",
                 "qMRMLSegmentSelectorWidget", "qMRMLSubjectHierarchyTreeView"):
        mrml_widgets[name] = type(name, (QWidget,), {"setMRMLScene": lambda self, s: None})
    return ctk, mrml_widgets


def _loader(qt, classes):
    from PySide6 import QtUiTools

    class QUiLoader(QtUiTools.QUiLoader):
        """Builds the PythonQt-like widgets and the stand-ins by class name."""

        def createWidget(self, className, parent=None, name=""):
            cls = classes.get(className)
            if cls is None:
                return super().createWidget(className, parent, name)
            w = cls(parent)
            w.setObjectName(name)
            return w

    return QUiLoader


def _load_module(name, path, package=False):
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py" if package else path,
        submodule_search_locations=[str(path)] if package else None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_release(version):
    """Install the stand-ins and the release's ``parameterNodeWrapper`` (fresh, so two
    releases can be checked in one process); returns that module."""
    import slicer

    folder = SLICER_PYTHON / version / "slicer"
    if not folder.is_dir():
        raise FileNotFoundError(folder)
    if "qt" not in _state:
        qt, widgets = _qt()
        ctk, mrml_widgets = _standins(qt, widgets)
        classes = dict(widgets, **{k: getattr(ctk, k) for k in dir(ctk) if k.startswith("ctk")},
                       **mrml_widgets)
        qt.QUiLoader = _loader(qt, classes)
        _state.update(qt=qt, ctk=ctk, classes=classes, mrml=mrml_widgets)
    sys.modules["qt"], sys.modules["ctk"] = _state["qt"], _state["ctk"]
    for name, cls in _state["mrml"].items():
        setattr(slicer, name, cls)
    for mod in [m for m in sys.modules if m.startswith("slicer.parameterNodeWrapper")]:
        del sys.modules[mod]
    if not hasattr(slicer, "i18n"):
        slicer.i18n = _load_module("slicer.i18n", folder / "i18n.py")
    pnw = _load_module("slicer.parameterNodeWrapper", folder / "parameterNodeWrapper", package=True)
    slicer.parameterNodeWrapper = pnw
    return pnw


def load_ui(path):
    """``(widget, ui)``: the .ui file's widget tree (PythonQt-like widgets and stand-ins)
    and a namespace of its named children, as Slicer's loadUI / childWidgetVariables."""
    from PySide6 import QtCore, QtWidgets

    qt = _state["qt"]
    f = QtCore.QFile(str(path))
    f.open(QtCore.QFile.ReadOnly)
    widget = qt.QUiLoader().load(f)
    f.close()
    if widget is None:
        raise RuntimeError(f"could not load {path}")
    ui = types.SimpleNamespace()
    for child in widget.findChildren(QtWidgets.QWidget):
        name = QtCore.QObject.objectName(child)  # (a property, as in PythonQt, on our widgets)
        if name:
            setattr(ui, name, child)
        if type(child).__name__ == "qMRMLNodeComboBox":  # the .ui's nodeTypes, as Slicer reads it
            child.nodeTypes = list(QtCore.QObject.property(child, "nodeTypes") or [])
    return widget, ui


def module_file(path):
    """Import a Slicer module file (its ``slicer.ScriptedLoadableModule`` names stubbed: the
    contract test needs its parameter classes and module-level helpers, not its widget)."""
    import slicer

    if "slicer.ScriptedLoadableModule" not in sys.modules:
        slm = types.ModuleType("slicer.ScriptedLoadableModule")
        for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic",
                     "ScriptedLoadableModuleTest", "ScriptedLoadableModuleWidget"):
            setattr(slm, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
        sys.modules["slicer.ScriptedLoadableModule"] = slm
        slicer.ScriptedLoadableModule = slm
    if not hasattr(slicer.util, "VTKObservationMixin"):
        slicer.util.VTKObservationMixin = type("VTKObservationMixin", (), {})
    name = f"_module_{Path(path).stem}_{len(sys.modules)}"
    return _load_module(name, Path(path))
