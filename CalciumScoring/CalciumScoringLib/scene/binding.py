"""Combo boxes whose items are known only at run time, bound to str parameters.

Slicer's ``parameterNodeWrapper`` binds a combo box to a str parameter only with a fixed
``Choice`` annotation, and refills the combo from it, dropping the model names a module
adds at setup.  :func:`fillChoices` fills the artery-source and calcification combo boxes
of the CalciumScoring panel from the model registry, and :class:`ChoiceBinding` binds them
to their parameters both ways.  No ``slicer`` or Qt import: the combo boxes and the
parameter node are passed in (the contract test runs this on real Qt widgets and Slicer's
real wrapper, ``Testing/test_slicer_contract.py``).
"""

#: threshold methods offered in the calcification combo box (the default first)
THRESHOLD_METHODS = ["lumen_relative", "adaptive", "fixed", "display_8bit", "otsu"]


def fillChoices(ui, groupModels, calciumModels):
    """The artery-source and calcification combo boxes, with the registry's model names."""
    ui.arterySourceComboBox.clear()
    ui.arterySourceComboBox.addItems(["segmentation"] + list(groupModels))
    ui.calciumMethodComboBox.clear()
    ui.calciumMethodComboBox.addItems(THRESHOLD_METHODS + list(calciumModels))


class ChoiceBinding:
    """Two-way binding of str parameters to combo boxes whose items are filled at setup.

    ``combos``: parameter name -> combo box.  A parameter change selects its item (a
    value not in the combo is added); a user choice writes the parameter.
    :meth:`disconnect` removes both directions."""

    def __init__(self, parameterNode, combos):
        import vtk

        self.node, self.combos = parameterNode, dict(combos)
        self._slots = {}
        for name, combo in self.combos.items():
            slot = (lambda n: lambda index: self._toParameter(n))(name)
            combo.currentIndexChanged.connect(slot)
            self._slots[name] = slot
        self._tag = parameterNode.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                            lambda *a: self.update())
        self.update()

    def _toParameter(self, name):
        value = self.combos[name].currentText
        if value and getattr(self.node, name) != value:
            setattr(self.node, name, value)

    def update(self):
        for name, combo in self.combos.items():
            value = getattr(self.node, name)
            index = combo.findText(value)
            if index < 0:
                combo.addItem(value)
                index = combo.findText(value)
            if combo.currentIndex != index:
                combo.currentIndex = index

    def disconnect(self):
        for name, combo in self.combos.items():
            combo.currentIndexChanged.disconnect(self._slots[name])
        self.node.parameterNode.RemoveObserver(self._tag)
