"""CalciumScoringLib: pure-Python algorithms of the VascularCalcium extension.

Nothing in this package imports ``slicer``; the MRML adapters live in
:mod:`CalciumScoringLib.mrml` and import only MRML/logic classes.
"""

__version__ = "0.1.0"
